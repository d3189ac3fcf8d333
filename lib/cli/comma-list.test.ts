import { describe, expect, test } from "bun:test";
import { commaList, listFileText, tagList } from "./comma-list.ts";

describe("commaList", () => {
  test("splits, trims and drops empty items, from a string or from each item of an array", () => {
    expect(commaList(" web, db ,,")).toEqual(["web", "db"]);
    expect(commaList(["a,b", " c "])).toEqual(["a", "b", "c"]);
    expect(commaList("")).toEqual([]);
    expect(commaList(undefined)).toEqual([]);
  });
});

describe("tagList", () => {
  test("reads a list as commaList does, each tag once where first given", () => {
    expect(tagList("main, beta,main,,beta")).toEqual(["main", "beta"]);
    expect(tagList(["a,b", "a", " c,b"])).toEqual(["a", "b", "c"]);
    expect(tagList(undefined)).toEqual([]);
  });
});

describe("listFileText", () => {
  test("reads items one a line or comma-separated, trimmed, blank lines and # comments left out", () => {
    expect(listFileText("web\r\n db, api ,\n\n# not now\nmqtt\n")).toEqual(["web", "db", "api", "mqtt"]);
    expect(listFileText("a,#b")).toEqual(["a"]);
    // A comment runs to the end of its line: the items after a comma in it are not apps.
    expect(listFileText("# not now, later\nweb # the kiosk, and more\n")).toEqual(["web"]);
    expect(listFileText("")).toEqual([]);
  });
});
