import { describe, expect, test } from "bun:test";
import { DURATION_PATTERN, InvalidDurationError, parseDuration } from "./duration.ts";

describe("parseDuration", () => {
  test("reads units and bare seconds", () => {
    expect(parseDuration("30d")).toBe(30 * 86400);
    expect(parseDuration("12h")).toBe(43200);
    expect(parseDuration("90m")).toBe(5400);
    expect(parseDuration("2w")).toBe(1209600);
    expect(parseDuration("3600")).toBe(3600);
    expect(parseDuration(60)).toBe(60);
  });

  test("refuses nonsense, zero and negatives", () => {
    for (const bad of ["soon", "0", "-5m", "1y", "", 0, 1.5]) expect(() => parseDuration(bad as string)).toThrow(InvalidDurationError);
  });

  test("says zero and negatives are too small, and anything else malformed, in the value's own terms", () => {
    for (const small of ["0", "0d", "-5m", 0, -3]) expect(() => parseDuration(small as string)).toThrow(`Invalid duration "${small}": must be more than 0`);
    for (const bad of ["soon", "1y", "--5", 1.5]) expect(() => parseDuration(bad as string)).toThrow(`Invalid duration "${bad}": expected a number with an optional unit s, m, h, d or w (e.g. 30d)`);
  });
});

describe("parseDuration limits", () => {
  test("refuses lifetimes past 50 years instead of overflowing a date or PostgreSQL's integer columns", () => {
    for (const huge of ["999999999w", 1e300, Number.MAX_SAFE_INTEGER, "5000w", 2 ** 31]) expect(() => parseDuration(huge as string)).toThrow(/50 years/);
    expect(parseDuration("2600w")).toBe(2600 * 604800); // 49.9 years
  });
});

test("zero is a duration only where asked (registry gc's no grace); the API's pattern is the parser's syntax", () => {
  expect(parseDuration("0s", { allowZero: true })).toBe(0);
  expect(parseDuration("000m", { allowZero: true })).toBe(0);
  expect(() => parseDuration("0s")).toThrow("must be more than 0");
  // A sign is no duration, even before a zero (registry gc --grace -0s was taken as no grace).
  for (const v of ["-0s", "-0", " -0s ", "-5m"]) expect(() => parseDuration(v as string, { allowZero: true })).toThrow(`Invalid duration "${v}": must be 0 or more`);
  for (const v of ["30d", "12h", "3600", "2w"]) expect(new RegExp(DURATION_PATTERN).test(v)).toBe(true);
  for (const v of ["30 d", "1y", "-5m", ""]) expect(new RegExp(DURATION_PATTERN).test(v)).toBe(false);
});
