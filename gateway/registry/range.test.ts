import { describe, expect, test } from "bun:test";
import { RegistryRequestError } from "./errors.ts";
import { parseRange, parseUploadRange } from "./range.ts";

describe("parseRange", () => {
  test("resolves the three single-range forms", () => {
    expect(parseRange("bytes=500-1499", 2000)).toEqual({ start: 500, end: 1499 });
    expect(parseRange("bytes=500-", 2000)).toEqual({ start: 500, end: 1999 });
    expect(parseRange("bytes=-500", 2000)).toEqual({ start: 1500, end: 1999 });
  });
  test("clamps an end past the blob and a suffix longer than it", () => {
    expect(parseRange("bytes=10-99999", 100)).toEqual({ start: 10, end: 99 });
    expect(parseRange("bytes=-500", 100)).toEqual({ start: 0, end: 99 });
  });
  test("ignores absent, multi-range and malformed headers", () => {
    expect(parseRange(undefined, 10)).toBeUndefined();
    expect(parseRange("bytes=0-1,4-5", 10)).toBeUndefined();
    expect(parseRange("items=0-1", 10)).toBeUndefined();
    expect(parseRange("bytes=5-2", 10)).toBeUndefined();
  });
  test("throws 416 for a start past the end or an empty suffix", () => {
    for (const h of ["bytes=10-", "bytes=-0"]) {
      try {
        parseRange(h, 10);
        throw new Error("no throw");
      } catch (err) {
        expect(err).toBeInstanceOf(RegistryRequestError);
        expect((err as RegistryRequestError).status).toBe(416);
        expect((err as RegistryRequestError).headers).toEqual({ "Content-Range": "bytes */10" });
      }
    }
  });
});

describe("parseUploadRange", () => {
  test("accepts start-end with or without a bytes prefix", () => {
    expect(parseUploadRange("0-999")).toEqual({ start: 0, end: 999 });
    expect(parseUploadRange("bytes 1000-1999/*")).toEqual({ start: 1000, end: 1999 });
    expect(parseUploadRange(undefined)).toBeUndefined();
  });
  test("throws 416 for a malformed header", () => {
    expect(() => parseUploadRange("abc")).toThrow(RegistryRequestError);
    expect(() => parseUploadRange("9-1")).toThrow(RegistryRequestError);
  });
});
