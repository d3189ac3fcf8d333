import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { copyFile, mkdtemp, readdir, rename, rm, stat } from "node:fs/promises";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { until } from "../../test/harness/tmp.ts";
import { EMPTY_SHA256, type TargetEntry } from "../../lib/api/target.ts";
import { generateKey, loadKeyFile } from "../../lib/tuf/keys.ts";
import { expiresAt, parseMetadata } from "../../lib/tuf/metadata.ts";
import { draftNextRoot, signRoot, type RootChanges } from "../../lib/tuf/root-ceremony.ts";
import { SigningKeyUnavailableError } from "./key-store.ts";
import { MemoryTufStorage } from "./memory-storage.ts";
import { startTufRefreshTimer } from "./refresh-timer.ts";
import { InvalidRoleError, InvalidRootError, InvalidTargetError, TargetNotFoundError, TargetsTooLargeError, TufRepo, type TufRepoOptions } from "./repo.ts";

const entry = (version: number, hwid = "rpi"): TargetEntry => ({
  length: 0,
  hashes: { sha256: EMPTY_SHA256 },
  custom: { version: String(version), hardwareIds: [hwid], tags: ["main"], docker_compose_apps: {} },
});

let dir: string;
let keysDir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "tuf-repo-"));
  keysDir = join(dir, "tuf", "keys");
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const open = (extra: Partial<TufRepoOptions> = {}) => TufRepo.open({ storage: new MemoryTufStorage(), keysDir, ...extra });
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** The served chain is consistent: timestamp pins snapshot, snapshot pins targets, by version, length and hash. */
async function expectConsistent(repo: TufRepo) {
  const ts = parseMetadata("timestamp", (await repo.metadata("timestamp.json"))!);
  const snapBytes = (await repo.metadata(`${ts.signed.snapshotMeta.version}.snapshot.json`))!;
  expect(ts.signed.snapshotMeta.hashes?.sha256).toBe(sha256(snapBytes));
  expect(ts.signed.snapshotMeta.length).toBe(snapBytes.length);
  const snap = parseMetadata("snapshot", snapBytes);
  const meta = snap.signed.meta["targets.json"]!;
  const targetsBytes = (await repo.metadata(`${meta.version}.targets.json`))!;
  expect(meta.hashes?.sha256).toBe(sha256(targetsBytes));
  expect(targetsBytes).toEqual((await repo.metadata("targets.json"))!);
}

describe("TufRepo", () => {
  test("leapVersions() signs targets (same content), snapshot and timestamp at their floors, a consistent chain, once", async () => {
    const repo = await open();
    await repo.addTargets({ "rpi-1": entry(1) });
    const before = await repo.targets();
    expect(await repo.leapVersions({ targets: 100_002, snapshot: 100_003, timestamp: 100_004 })).toEqual({ refreshed: ["targets", "snapshot", "timestamp"], needsOfflineKey: [] });
    expect(await repo.versions()).toMatchObject({ root: 1, targets: 100_002, snapshot: 100_003, timestamp: 100_004 });
    expect((await repo.targets()).targets).toEqual(before.targets);
    await expectConsistent(repo);
    // At or above the floors already (a replica that leaps after another, a restart): nothing signed.
    expect(await repo.leapVersions({ targets: 100_002, snapshot: 100_003, timestamp: 100_004 })).toEqual({ refreshed: [], needsOfflineKey: [] });
    expect((await repo.versions()).timestamp).toBe(100_004);
  });

  test("open() creates the four keys (mode 0600) and version 1 of every role, once", async () => {
    const storage = new MemoryTufStorage();
    const repo = await TufRepo.open({ storage, keysDir });
    expect((await readdir(keysDir)).sort()).toEqual(["root.json", "snapshot.json", "targets.json", "timestamp.json"]);
    for (const f of await readdir(keysDir)) expect((await stat(join(keysDir, f))).mode & 0o777).toBe(0o600);
    expect(await repo.versions()).toEqual({ root: 1, targets: 1, snapshot: 1, timestamp: 1 });
    expect(await repo.targets()).toEqual({ targets: {}, version: 1 });
    const root = parseMetadata("root", await repo.trustedRoot());
    expect(root.signed.consistentSnapshot).toBe(true);
    expect(() => root.verifyDelegate("root", root)).not.toThrow();
    const again = await TufRepo.open({ storage, keysDir });
    expect(await again.trustedRoot()).toEqual(await repo.trustedRoot());
    await expectConsistent(repo);
  });

  test("metadata() serves the route's file names and nothing else", async () => {
    const repo = await open();
    for (const name of ["1.root.json", "root.json", "timestamp.json", "snapshot.json", "1.snapshot.json", "targets.json", "1.targets.json"])
      expect(await repo.metadata(name)).toBeInstanceOf(Uint8Array);
    for (const name of ["2.root.json", "1.timestamp.json", "0.root.json", "01.root.json", "foo.json", "../root.json", "root.json.bak", ""])
      expect(await repo.metadata(name)).toBeUndefined();
    expect(new TextDecoder().decode(await repo.metadata("1.root.json"))).toBe(new TextDecoder().decode(await repo.trustedRoot()));
  });

  test("addTargets() makes one new targets version and re-signs snapshot and timestamp", async () => {
    const repo = await open();
    const r = await repo.addTargets({ "rpi-1": entry(1), "rpi-2": entry(2) });
    expect(r).toEqual({ version: 2, pruned: [] });
    expect(await repo.versions()).toEqual({ root: 1, targets: 2, snapshot: 2, timestamp: 2 });
    expect((await repo.targets()).targets["rpi-2"]).toEqual(entry(2));
    await repo.addTargets({ "rpi-2": { ...entry(2), custom: { ...entry(2).custom, tags: ["beta"] } } });
    expect((await repo.targets()).targets["rpi-2"]!.custom.tags).toEqual(["beta"]);
    await expectConsistent(repo);
    // Old versions stay served (consistent snapshots).
    expect(parseMetadata("targets", (await repo.metadata("2.targets.json"))!).signed.version).toBe(2);
  });

  test("a bad entry or name is refused and nothing changes", async () => {
    const repo = await open();
    await repo.addTargets({ "rpi-1": entry(1) });
    const bad = { ...entry(2), custom: { ...entry(2).custom, version: "two" } };
    await expect(repo.addTargets({ "rpi-2": entry(2), "rpi-x": bad })).rejects.toThrow(InvalidTargetError);
    await expect(repo.addTargets({ "../evil": entry(3) })).rejects.toThrow(/Cannot add target "..\/evil"/);
    await expect(repo.removeTargets(["rpi-1", "nope"])).rejects.toThrow(TargetNotFoundError);
    expect(await repo.targets()).toEqual({ targets: { "rpi-1": entry(1) }, version: 2 });
  });

  test("removeTargets() removes in one version", async () => {
    const repo = await open();
    await repo.addTargets({ "rpi-1": entry(1), "rpi-2": entry(2), "rpi-3": entry(3) });
    expect(await repo.removeTargets(["rpi-1", "rpi-3"])).toEqual({ version: 3 });
    expect(Object.keys((await repo.targets()).targets)).toEqual(["rpi-2"]);
    await expectConsistent(repo);
  });

  test("retention keeps the newest N targets per hardware id", async () => {
    const repo = await open({ maxTargetsPerHwid: 3 });
    await repo.addTargets({ "rpi-1": entry(1), "rpi-2": entry(2), "x86-1": entry(1, "x86") });
    const r = await repo.addTargets({ "rpi-10": entry(10), "rpi-9": entry(9) });
    expect(r.pruned).toEqual(["rpi-1"]);
    expect(Object.keys((await repo.targets()).targets).sort()).toEqual(["rpi-10", "rpi-2", "rpi-9", "x86-1"]);
    // A new target older than the 3 kept would be pruned in its own write: refused, nothing changes.
    const version = (await repo.targets()).version;
    await expect(repo.addTargets({ "rpi-1": entry(1) })).rejects.toThrow(
      'Cannot add target "rpi-1": version 1 is older than the 3 newest targets kept for hardware id rpi, so it would be pruned at once: publish a higher version',
    );
    await expect(repo.addTargets({ "rpi-11": entry(11), "rpi-12": entry(12), "rpi-13": entry(13), "rpi-14": entry(14) })).rejects.toThrow(/Cannot add target "rpi-11"/);
    expect((await repo.targets()).version).toBe(version);
  });

  test("targets.json over the size cap is refused", async () => {
    const repo = await open({ maxTargetsBytes: 2000 });
    const many = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`rpi-${i}`, entry(i)]));
    await expect(repo.addTargets(many)).rejects.toThrow(TargetsTooLargeError);
    expect((await repo.targets()).version).toBe(1);
  });

  test("concurrent writers, in one process and across two sharing storage, lose nothing", async () => {
    const storage = new MemoryTufStorage();
    const a = await TufRepo.open({ storage, keysDir });
    const b = await TufRepo.open({ storage, keysDir });
    await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 ? a : b).addTargets({ [`rpi-${i}`]: entry(i) })));
    const { targets, version } = await a.targets();
    expect(Object.keys(targets).length).toBe(12);
    expect(version).toBe(13);
    await expectConsistent(a);
  });

  test("refreshTimestamp() re-signs only what is near expiry", async () => {
    let now = Date.now();
    const repo = await open({ now: () => new Date(now) });
    expect(await repo.refreshTimestamp()).toEqual({ refreshed: [], needsOfflineKey: [] });
    now += 20 * 3600_000; // timestamp (1 day, 6 h margin) due
    expect((await repo.refreshTimestamp()).refreshed).toEqual(["timestamp"]);
    now += 6 * 86400_000; // snapshot (7 days) and timestamp due
    expect((await repo.refreshTimestamp()).refreshed).toEqual(["snapshot", "timestamp"]);
    now += 300 * 86400_000; // everything
    expect((await repo.refreshTimestamp()).refreshed).toEqual(["root", "targets", "snapshot", "timestamp"]);
    expect(await repo.versions()).toEqual({ root: 2, targets: 2, snapshot: 3, timestamp: 4 });
    await expectConsistent(repo);
  });

  test("an offline targets key: writes fail cleanly, refresh reports it", async () => {
    let now = Date.now();
    const repo = await open({ now: () => new Date(now) });
    await rename(join(keysDir, "targets.json"), join(dir, "targets-offline.json"));
    await expect(repo.addTargets({ "rpi-1": entry(1) })).rejects.toThrow(SigningKeyUnavailableError);
    expect((await repo.targets()).version).toBe(1);
    now += 300 * 86400_000;
    const r = await repo.refreshTimestamp();
    expect(r.needsOfflineKey).toEqual(["targets"]);
    expect(r.refreshed).toEqual(["root", "snapshot", "timestamp"]);
    await rename(join(dir, "targets-offline.json"), join(keysDir, "targets.json"));
    await repo.addTargets({ "rpi-1": entry(1) });
  });

  test("with the targets key moved out, a new view is refused: no copy of the key is kept in memory from an earlier view", async () => {
    const repo = await open();
    await repo.addTargets({ "rpi-1": entry(1), "rpi-2": entry(2) });
    const view = (key: string, hide: string) => () => ({ key, hideVersions: [hide], annotate: {} });
    expect(await repo.metadata("targets.json", view("r1:a", "2"))).toBeInstanceOf(Uint8Array); // signed with the key in the folder
    await rename(join(keysDir, "targets.json"), join(dir, "targets-offline.json"));
    await expect(Promise.resolve(repo.metadata("targets.json", view("r1:b", "1")))).rejects.toThrow(SigningKeyUnavailableError);
    await rename(join(dir, "targets-offline.json"), join(keysDir, "targets.json"));
    expect(await repo.metadata("targets.json", view("r1:b", "1"))).toBeInstanceOf(Uint8Array);
  });

  test("a damaged key file is said to be damaged, not offline", async () => {
    const repo = await open();
    await rename(join(keysDir, "targets.json"), join(dir, "targets-good.json"));
    await expect(repo.addTargets({ "rpi-1": entry(1) })).rejects.toThrow(/^Cannot sign TUF targets metadata with .*\/keys: the targets key root\.json trusts \([0-9a-f]{64}\) is in none of its files \(offline\?\)$/);
    await Bun.write(join(keysDir, "targets.json"), "garbage{");
    await expect(repo.addTargets({ "rpi-1": entry(1) })).rejects.toThrow(/targets\.json: the key file is there but cannot be read \(.+\); restore it from a backup$/);
    await rename(join(dir, "targets-good.json"), join(keysDir, "targets.json"));
    await repo.addTargets({ "rpi-1": entry(1) });
  });

  test("rotate() replaces the key file and the root lists only the new key", async () => {
    const repo = await open();
    for (const role of ["timestamp", "root"] as const) {
      const before = parseMetadata("root", await repo.trustedRoot()).signed;
      const { keyId, rootVersion } = await repo.rotate(role);
      const after = parseMetadata("root", await repo.trustedRoot()).signed;
      expect(after.version).toBe(rootVersion);
      expect(after.roles[role]!.keyIDs).toEqual([keyId]);
      expect(Object.keys(after.keys)).not.toContain(before.roles[role]!.keyIDs[0]);
    }
    expect((await readdir(keysDir)).sort()).toEqual(["root.json", "snapshot.json", "targets.json", "timestamp.json"]);
    await repo.addTargets({ "rpi-1": entry(1) });
    await expectConsistent(repo);
  });

  test("a rotation interrupted before the key file was promoted is completed on next use", async () => {
    const repo = await open();
    await copyFile(join(keysDir, "snapshot.json"), join(dir, "old-snapshot.json"));
    await repo.rotate("snapshot");
    // As if the process died after storing the new root, before renaming next -> current.
    await rename(join(keysDir, "snapshot.json"), join(keysDir, "snapshot.next.json"));
    await copyFile(join(dir, "old-snapshot.json"), join(keysDir, "snapshot.json"));
    await repo.addTargets({ "rpi-1": entry(1) });
    expect(await readdir(keysDir)).not.toContain("snapshot.next.json");
    await expectConsistent(repo);
  });

  test("startTufRefreshTimer() re-signs the timestamp when due and stops", async () => {
    let offset = 0;
    const repo = await open({ now: () => new Date(Date.now() + offset) });
    const seen: string[][] = [];
    const errors: unknown[] = [];
    const timer = startTufRefreshTimer(repo, { intervalMs: 20, onRefresh: (r) => seen.push(r.refreshed), onError: (e) => errors.push(e) });
    await Bun.sleep(80);
    expect(seen).toEqual([]); // nothing due with a fresh timestamp
    offset = 20 * 3600_000;
    // Waits for the first refresh rather than a fixed time (a check signs, and a slow machine takes
    // longer), then a few more intervals so a second refresh, if any, would show.
    await until("a refresh once the timestamp fell due", () => ({ refreshes: seen.length, errors: errors.map(String) }), (v) => v.refreshes > 0, 5000);
    await Bun.sleep(100);
    await timer.stop();
    expect(seen).toEqual([["timestamp"]]); // once: the new one is fresh again
    expect(errors).toEqual([]);
    const v = (await repo.versions()).timestamp;
    await Bun.sleep(60);
    expect((await repo.versions()).timestamp).toBe(v); // stopped
  }, 15_000); // more than the 5 s the refresh is waited for

  test("startTufRefreshTimer() says since when checks fail, tries again within retryMs, and forgets once one passes", async () => {
    let offset = 0;
    const repo = await open({ now: () => new Date(Date.now() + offset) });
    const errors: string[] = [];
    const recovered: number[] = [];
    // An hour between checks: only the retry after a failure can come within the test.
    const timer = startTufRefreshTimer(repo, { intervalMs: 3600_000, retryMs: 50, onError: (e) => errors.push((e as Error).message), onRecover: (f) => recovered.push(f.since) });
    expect(timer.failing()).toBeUndefined();
    await rename(join(keysDir, "timestamp.json"), join(dir, "timestamp.json"));
    offset = 20 * 3600_000; // the timestamp falls due
    timer.runNow();
    const failing = await until("a failed check", () => timer.failing(), (f) => f !== undefined, 5000);
    expect(failing!.error).toStartWith("Cannot sign TUF timestamp metadata with ");
    await until("retries", () => errors.length, (n) => n >= 3, 5000);
    expect(timer.failing()!.since).toBe(failing!.since); // since the first failure in a row
    await rename(join(dir, "timestamp.json"), join(keysDir, "timestamp.json"));
    await until("a passing retry", () => timer.failing(), (f) => f === undefined, 5000);
    expect(recovered).toEqual([failing!.since]);
    await timer.stop();
  }, 15_000);

  test("old targets, snapshot and timestamp versions are dropped; the root chain is kept", async () => {
    const repo = await open({ keepVersions: 3 });
    for (let i = 1; i <= 6; i++) await repo.addTargets({ [`rpi-${i}`]: entry(i) });
    await repo.rotate("root");
    expect(await repo.metadata("7.targets.json")).toBeDefined();
    expect(await repo.metadata("5.targets.json")).toBeDefined();
    expect(await repo.metadata("4.targets.json")).toBeUndefined();
    expect(await repo.metadata("4.snapshot.json")).toBeUndefined();
    expect(await repo.metadata("1.root.json")).toBeDefined();
    expect(await repo.metadata("2.root.json")).toBeDefined();
    await expectConsistent(repo);
  });

  test("updateRoot() refuses a root that is not the next version, has expired, or names keys the gateway lacks", async () => {
    const repo = await open();
    const v1 = await repo.trustedRoot();
    const rootKey = await loadKeyFile(join(keysDir, "root.json"));
    const expires = expiresAt(new Date(), 86400);
    const next = (changes: Partial<RootChanges> = {}) => signRoot(draftNextRoot(v1, { expires, ...changes }), rootKey);
    await expect(repo.updateRoot("{}")).rejects.toThrow(InvalidRootError);
    const v2 = next();
    const v3 = signRoot(draftNextRoot(v2, { expires }), rootKey);
    await expect(repo.updateRoot(v3)).rejects.toThrow(/it is version 3; the next root version is 2/);
    await expect(repo.updateRoot(next({ expires: "2020-01-01T00:00:00Z" }))).rejects.toThrow(/expired/);
    await expect(repo.updateRoot(next({ keys: { timestamp: [generateKey()] } }))).rejects.toThrow(/does not hold 1 of the timestamp keys/);
    expect(await repo.versions()).toEqual({ root: 1, targets: 1, snapshot: 1, timestamp: 1 });
    expect((await repo.updateRoot(v2)).version).toBe(2);
    await expect(repo.updateRoot(v2)).rejects.toThrow(/the next root version is 3/);
    await expectConsistent(repo);
  });

  test("rotate() refuses an unknown role", async () => {
    const repo = await open();
    await expect(repo.rotate("mirror" as never)).rejects.toThrow(InvalidRoleError);
  });
});
