import { describe, expect, test } from "bun:test";
import { SqliteStore } from "../store/sqlite.ts";
import { InvalidFleetQueryError, groupAudience, parseFleetQuery, parseLabel, tryParseFleetQuery } from "./query.ts";

describe("parseFleetQuery", () => {
  test("reads labels, tags, hardware id and name, ANDed", () => {
    expect(parseFleetQuery("region=eu tag=prod tag=beta hwid=rpi4 name~kiosk site/floor=3")).toEqual({
      labels: { region: "eu", "site/floor": "3" },
      tags: ["prod", "beta"],
      hardwareId: "rpi4",
      nameContains: "kiosk",
    });
    expect(parseFleetQuery("  hardware-id=amd64  ")).toEqual({ hardwareId: "amd64" });
    expect(parseFleetQuery('site="Berlin 2" name~"front desk"')).toEqual({ labels: { site: "Berlin 2" }, nameContains: "front desk" });
  });

  test.each([
    ["", /empty/],
    ["region", /expected key=value/],
    ["Region=eu", /Invalid label key "Region"/],
    ["region~eu", /only name~text/],
    ["region=", /value is empty/],
    ["region=eu region=us", /given twice/],
    ["hwid=a hardware-id=b", /given twice/],
    ['site="open', /not closed/],
    [`k=${"x".repeat(129)}`, /longer than 128/],
    ["region==eu", 'Invalid query term "region==eu": write region=eu (one =: terms are key=value or name~text)'],
    ["name~~kiosk", /write name~kiosk/],
  ])("refuses %j with a clear error", (q, why) => {
    expect(() => parseFleetQuery(q)).toThrow(InvalidFleetQueryError);
    expect(() => parseFleetQuery(q)).toThrow(why);
    expect(tryParseFleetQuery(q)).toBeUndefined();
  });
});

describe("parseLabel", () => {
  test("splits at the first = and checks key and value", () => {
    expect(parseLabel("url=a=b")).toEqual(["url", "a=b"]);
    expect(parseLabel("empty=")).toEqual(["empty", ""]);
    expect(() => parseLabel("novalue")).toThrow(/expected key=value/);
    expect(() => parseLabel("-x=1")).toThrow(/Invalid label key/);
  });
});

describe("groupAudience", () => {
  test("a dynamic group is evaluated when used; a static group is its non-revoked members", async () => {
    const s = SqliteStore.open(":memory:");
    try {
      const dev = (uuid: string, tags: string[]) => s.putDevice({ uuid, name: uuid, hardwareId: "hw", factory: "f", tags, certSerial: "01" });
      await dev("a", ["prod"]);
      await dev("b", ["prod"]);
      await dev("c", ["dev"]);
      await s.setDeviceLabels("a", { region: "eu" }, []);
      const dyn = { name: "eu-prod", kind: "dynamic" as const, query: "region=eu tag=prod", createdAt: "t" };
      expect(await groupAudience(s, dyn)).toEqual(["a"]);
      await s.setDeviceLabels("b", { region: "eu" }, []); // a label set later counts at the next use
      expect(await groupAudience(s, dyn)).toEqual(["a", "b"]);
      const stat = { name: "pilot", kind: "static" as const, query: null, createdAt: "t" };
      await s.createGroup(stat);
      await s.addGroupMembers("pilot", ["a", "c"]);
      await s.revokeDevice("c", new Date().toISOString());
      expect(await groupAudience(s, stat)).toEqual(["a"]);
    } finally {
      await s.close();
    }
  });
});
