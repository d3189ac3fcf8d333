import { describe, expect, test } from "bun:test";
import { commaList } from "./comma-list.ts";

describe("commaList", () => {
  test("splits, trims and drops empty items, from a string or from each item of an array", () => {
    expect(commaList(" web, db ,,")).toEqual(["web", "db"]);
    expect(commaList(["a,b", " c "])).toEqual(["a", "b", "c"]);
    expect(commaList("")).toEqual([]);
    expect(commaList(undefined)).toEqual([]);
  });
});
