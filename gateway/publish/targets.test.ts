import { describe, expect, test } from "bun:test";
import { Value } from "@sinclair/typebox/value";
import { EMPTY_SHA256, TargetEntry } from "../../lib/api/target.ts";
import { checkVersionFree, makeTargets, nextVersion, RUNNING_LEAP_MAX, runningIgnored, TargetVersionError } from "./targets.ts";

describe("targets", () => {
  test("one target per hardware id with every tag, valid against the shared schema", () => {
    const t = makeTargets({ hwids: ["x86_64-linux", "arm64-linux"], tags: ["master", "production"], version: 7, apps: { httpd: "r/main/httpd@sha256:" + "a".repeat(64) }, containersSha: "f".repeat(40) });
    expect(Object.keys(t)).toEqual(["x86_64-linux-7", "arm64-linux-7"]);
    const e = t["arm64-linux-7"]!;
    expect(e.length).toBe(0);
    expect(e.hashes.sha256).toBe(EMPTY_SHA256);
    expect(e.custom).toMatchObject({ version: "7", hardwareIds: ["arm64-linux"], tags: ["master", "production"], targetFormat: "OSTREE", "containers-sha": "f".repeat(40) });
    expect(e.custom.docker_compose_apps.httpd!.uri).toContain("@sha256:");
    expect(Value.Check(TargetEntry, e)).toBe(true);
  });
  test("the next version is numerically above every existing one", () => {
    const mk = (v: string) => makeTargets({ hwids: ["h"], tags: [], version: Number(v), apps: {}, containersSha: "x" })[`h-${v}`]!;
    expect(nextVersion({})).toBe(1);
    expect(nextVersion({ "h-9": mk("9"), "h-10": mk("10") })).toBe(11);
  });
  test("the next version is above the versions devices report running too (a gateway restored from an older backup lacks them)", () => {
    const v1 = makeTargets({ hwids: ["x86_64-linux"], tags: [], version: 1, apps: {}, containersSha: "x" });
    expect(nextVersion(v1, ["x86_64-linux-3", "x86_64-linux-1", "preloaded"])).toBe(4);
    expect(nextVersion(v1, ["x86_64-linux-1"])).toBe(2);
    // A device says what it runs itself: a claim far above the existing versions moves nothing (and 15 digits would leave no next).
    expect(nextVersion(v1, ["x86_64-linux-999999999999999"])).toBe(2);
    expect(nextVersion(v1, [`x86_64-linux-${1 + RUNNING_LEAP_MAX}`])).toBe(2 + RUNNING_LEAP_MAX);
    expect(nextVersion(v1, [`x86_64-linux-${2 + RUNNING_LEAP_MAX}`])).toBe(2);
    expect(runningIgnored(v1, ["x86_64-linux-3", "x86_64-linux-999999999999999"])).toEqual(["x86_64-linux-999999999999999"]);
    // Never a version a device runs, near or far: 3 lifts to 4, and 4 and 5 are run too.
    expect(nextVersion(v1, ["x86_64-linux-3", "kiosk-4", `x86_64-linux-5`])).toBe(6);
    // Only a name of targetName's form whose tail is a target version (1-15 digits, lib/api/target.ts) carries one.
    expect(nextVersion(v1, ["x86_64-linux-1234567890123456", "x86_64-linux-rc9", "42"])).toBe(2);
    // --version naming what devices run is refused, with the first free one.
    expect(() => checkVersionFree(["x86_64-linux"], 3, v1, ["x86_64-linux-3"])).toThrow(
      "Cannot make target x86_64-linux-3: devices of this gateway run a target of that name that targets.json no longer holds (removed, pruned, or published on a gateway since lost); choose --version 4 or higher",
    );
    expect(() => checkVersionFree(["x86_64-linux"], 4, v1, ["x86_64-linux-3"])).not.toThrow();
  });
  test("refuses to replace an existing target", () => {
    const existing = makeTargets({ hwids: ["h"], tags: [], version: 3, apps: {}, containersSha: "x" });
    expect(() => makeTargets({ hwids: ["h"], tags: [], version: 3, apps: {}, containersSha: "y" }, existing)).toThrow(TargetVersionError);
  });
  test("records each app's unpacked layer sizes when publish knows them, and nothing otherwise", () => {
    const layer = "sha256:" + "b".repeat(64);
    const t = makeTargets({ hwids: ["h"], tags: [], version: 1, apps: { a: "r/main/a@sha256:" + "a".repeat(64), b: "r/main/b@sha256:" + "c".repeat(64) }, uncompressedLayerSizes: { a: { [layer]: 1234 }, b: {} }, containersSha: "x" });
    expect(t["h-1"]!.custom.docker_compose_apps.a).toEqual({ uri: "r/main/a@sha256:" + "a".repeat(64), uncompressedLayerSizes: { [layer]: 1234 } });
    expect(t["h-1"]!.custom.docker_compose_apps.b).toEqual({ uri: "r/main/b@sha256:" + "c".repeat(64) });
    expect(Value.Check(TargetEntry, t["h-1"]!)).toBe(true);
  });
  test("refuses a target name over the one limit (200 characters)", () => {
    expect(() => makeTargets({ hwids: ["h".repeat(199)], tags: [], version: 1, apps: {}, containersSha: "x" })).toThrow("names are 1-200");
  });
});

describe("publish's hardware ids", () => {
  test("a hardware id no device can register with is refused before anything is read or pushed", async () => {
    const { publish } = await import("./publish.ts");
    const run = publish({ containersDir: "/nonexistent", ref: "main", server: "https://127.0.0.1:1", token: "t", hwids: ["amd64-linux", "raspberry pi"] });
    await expect(run).rejects.toThrow('Invalid --hwid: expected a hardware id (letters, digits, . _ -; at most 128, starting with a letter or digit), got "raspberry pi"');
  });
});
