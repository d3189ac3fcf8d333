import { describe, expect, test } from "bun:test";
import { printable } from "./printable.ts";
import { table } from "./table.ts";

describe("table", () => {
  test("pads columns and shows nothing as '-'", () => {
    expect(table(["NAME", "TAGS", "SEEN"], [["kiosk", ["main", "beta"], null], ["a", [], "now"]])).toBe(
      "NAME   TAGS       SEEN\nkiosk  main,beta  -\na      -          now",
    );
  });

  test("a cell cannot add lines or escape sequences", () => {
    const out = table(["NAME", "TARGET"], [["evil\r\nuuid-of-another\x1b[2J\x9b1m", "t\u202Eexe.txt"]]);
    expect(out.split("\n")).toHaveLength(2);
    for (const line of out.split("\n")) expect(line).not.toMatch(/[\x00-\x1f\x7f-\x9f\u202e]/);
    expect(out).toContain("evil");
  });

  test("empty and rule options", () => {
    expect(table(["A"], [], { empty: "(none)" })).toBe("(none)");
    expect(table(["AB", "C"], [["x", "y"]], { rule: true })).toBe("AB  C\n--  -\nx   y");
  });

  test("printable keeps ordinary text, including non-ASCII", () => {
    expect(printable("café – 東京 ok")).toBe("café – 東京 ok");
  });
});
