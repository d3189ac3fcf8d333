/**
 * The device's TUF client (lib/tuf verifyAndLoadTargets: tuf-js Updater with
 * our fetcher) against the gateway's TufRepo served by a real HTTP server on
 * 127.0.0.1, including the attacks TUF exists to stop.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MetaFile, Snapshot, Targets, Timestamp } from "@tufjs/models";
import {
  BadSignatureError,
  ExpiredMetadataError,
  InvalidExpiryGraceError,
  MetadataFetchError,
  MetadataMismatchError,
  MetadataTooLargeError,
  RollbackError,
  TrustedRootError,
  generateKey,
  loadKeyFile,
  metaFileFor,
  parseMetadata,
  signMetadata,
  verifyAndLoadTargets,
} from "../../lib/tuf/index.ts";
import { MemoryTufStorage, TufRepo } from "../../gateway/ota/index.ts";
import { serveRepo, targetEntry, type RepoServer } from "./_repo-server.ts";
import { describeError } from "../../lib/cli/command.ts";

const entry = targetEntry;

let work: string;
let keysDir: string;
let clock = () => new Date();
let repo: TufRepo;
let server: RepoServer;
let baseUrl: string;
/** Files the server answers with instead of the repository's (an attacker's view). */
let overrides: RepoServer["overrides"];
let seenHeaders: RepoServer["seenHeaders"];
let clients = 0;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "tuf-client-"));
  keysDir = join(work, "keys");
  repo = await TufRepo.open({ storage: new MemoryTufStorage(), keysDir, now: () => clock() });
  server = serveRepo(() => repo);
  ({ baseUrl, overrides, seenHeaders } = server);
});

afterAll(async () => {
  await server?.stop();
  await rm(work, { recursive: true, force: true });
});

/** A fresh device trust store holding root v1 (or the given root bytes). */
async function newDevice(root?: Uint8Array): Promise<string> {
  const dir = join(work, `device-${++clients}`);
  await mkdir(dir);
  await writeFile(join(dir, "root.json"), root ?? (await repo.metadata("1.root.json"))!);
  return dir;
}

const verify = (metadataDir: string, extra: Partial<Parameters<typeof verifyAndLoadTargets>[0]> = {}) =>
  verifyAndLoadTargets({ metadataDir, metadataBaseUrl: baseUrl, ...extra });

describe("verifyAndLoadTargets against TufRepo", () => {
  test("returns the signed targets and sends the device headers", async () => {
    await repo.addTargets({ "rpi-1": entry(1), "rpi-2": entry(2) });
    const dir = await newDevice();
    seenHeaders.length = 0;
    const got = await verify(dir, { headers: () => ({ "x-ats-tags": "main", "x-ats-target": "rpi-1" }) });
    expect(Object.keys(got.targets).sort()).toEqual(["rpi-1", "rpi-2"]);
    expect(got.targets["rpi-2"]).toEqual(entry(2));
    expect(got.version).toBe((await repo.targets()).version);
    expect(seenHeaders.length).toBeGreaterThanOrEqual(4);
    expect(seenHeaders.every((h) => h["x-ats-tags"] === "main" && h["x-ats-target"] === "rpi-1")).toBe(true);
  });

  test("sees added and removed targets on the next refresh", async () => {
    const dir = await newDevice();
    await verify(dir);
    await repo.addTargets({ "rpi-3": entry(3) });
    expect(Object.keys((await verify(dir)).targets)).toContain("rpi-3");
    await repo.removeTargets(["rpi-3"]);
    expect(Object.keys((await verify(dir)).targets)).not.toContain("rpi-3");
  });

  test("accepts a timestamp re-signed near expiry", async () => {
    const dir = await newDevice();
    await verify(dir);
    const before = (await repo.versions()).timestamp;
    expect((await repo.refreshTimestamp()).refreshed).toEqual([]); // nothing due yet
    clock = () => new Date(Date.now() + 20 * 3600_000); // 4 h before the 1-day timestamp expires
    try {
      expect((await repo.refreshTimestamp()).refreshed).toEqual(["timestamp"]);
    } finally {
      clock = () => new Date();
    }
    expect((await repo.versions()).timestamp).toBe(before + 1);
    await verify(dir);
    const local = parseMetadata("timestamp", await readFile(join(dir, "timestamp.json")));
    expect(local.signed.version).toBe(before + 1);
  });

  test("follows the root chain after every key is rotated", async () => {
    const old = await newDevice();
    await verify(old); // holds timestamp/snapshot signed by the old keys
    const fresh = await newDevice(); // only root v1
    const v0 = (await repo.versions()).root;
    for (const role of ["root", "targets", "snapshot", "timestamp"] as const) await repo.rotate(role);
    expect((await repo.versions()).root).toBe(v0 + 4);
    for (const dir of [old, fresh]) {
      const got = await verify(dir);
      expect(Object.keys(got.targets)).toContain("rpi-2");
      expect(parseMetadata("root", await readFile(join(dir, "root.json"))).signed.version).toBe(v0 + 4);
    }
    // Each new root is signed by the previous root key and its own.
    const r2 = parseMetadata("root", (await repo.metadata(`${v0 + 1}.root.json`))!);
    expect(Object.keys(r2.signatures).length).toBe(2);
    // The rotated keys are the ones on disk now.
    const latest = parseMetadata("root", (await repo.metadata("root.json"))!);
    for (const role of ["root", "targets", "snapshot", "timestamp"] as const)
      expect(latest.signed.roles[role]!.keyIDs).toEqual([(await loadKeyFile(join(keysDir, `${role}.json`))).keyId]);
  });

  test("refuses a rolled-back timestamp", async () => {
    const dir = await newDevice();
    await verify(dir);
    const oldTimestamp = (await repo.metadata("timestamp.json"))!;
    await repo.addTargets({ "rpi-4": entry(4) });
    await verify(dir);
    overrides.set("timestamp.json", oldTimestamp);
    try {
      const err = await verify(dir).catch((e) => e);
      expect(err).toBeInstanceOf(RollbackError);
      expect(err.message).toMatch(/timestamp/);
    } finally {
      overrides.clear();
    }
  });

  test("refuses an expired timestamp (freeze attack)", async () => {
    const dir = await newDevice();
    clock = () => new Date(Date.now() - 3 * 86400_000);
    try {
      await repo.addTargets({ "rpi-5": entry(5) }); // signed "3 days ago": timestamp and snapshot expired
    } finally {
      clock = () => new Date();
    }
    const err = await verify(dir).catch((e) => e);
    expect(err).toBeInstanceOf(ExpiredMetadataError);
    expect(err.message).toMatch(/timestamp\.json/);
    await repo.addTargets({ "rpi-6": entry(6) }); // a fresh signature heals it
    expect(Object.keys((await verify(dir)).targets)).toContain("rpi-6");
  });

  test("an expiry grace (offline bundles) accepts metadata expired within it, never beyond, and is bounded", async () => {
    const dir = await newDevice();
    clock = () => new Date(Date.now() - 3 * 86400_000);
    try {
      await repo.addTargets({ "rpi-g": entry(7) }); // signed "3 days ago": the timestamp expired 2 days ago
    } finally {
      clock = () => new Date();
    }
    expect(await verify(dir, { expiryGraceSeconds: 86400 }).catch((e) => e)).toBeInstanceOf(ExpiredMetadataError);
    expect(await verify(dir, { expiryGraceSeconds: 31 * 86400 }).catch((e) => e)).toBeInstanceOf(InvalidExpiryGraceError);
    expect(Object.keys((await verify(dir, { expiryGraceSeconds: 3 * 86400 })).targets)).toContain("rpi-g");
    await repo.addTargets({ "rpi-h": entry(8) }); // heal for the tests after this one
  });

  test("refuses targets signed by a key root does not trust", async () => {
    const dir = await newDevice();
    await verify(dir);
    // An attacker holding the online snapshot and timestamp keys, but not the targets key.
    const s = await repo.versions();
    const rogue = generateKey();
    const now = Date.now();
    const iso = (ms: number) => new Date(now + ms).toISOString().replace(/\.\d{3}Z$/, "Z");
    const evilTargets = signMetadata(
      Targets.fromJSON({ _type: "targets", spec_version: "1.0.31", version: s.targets + 1, expires: iso(86400_000), targets: { "rpi-99": entry(99) as never } }),
      [rogue],
    );
    const evilSnapshot = signMetadata(
      new Snapshot({ version: s.snapshot + 1, specVersion: "1.0.31", expires: iso(86400_000), meta: { "targets.json": metaFileFor(evilTargets, s.targets + 1) } }),
      [await loadKeyFile(join(keysDir, "snapshot.json"))],
    );
    const evilTimestamp = signMetadata(
      new Timestamp({ version: s.timestamp + 1, specVersion: "1.0.31", expires: iso(3600_000), snapshotMeta: metaFileFor(evilSnapshot, s.snapshot + 1) }),
      [await loadKeyFile(join(keysDir, "timestamp.json"))],
    );
    overrides.set(`${s.targets + 1}.targets.json`, evilTargets);
    overrides.set(`${s.snapshot + 1}.snapshot.json`, evilSnapshot);
    overrides.set("timestamp.json", evilTimestamp);
    try {
      const err = await verify(dir).catch((e) => e);
      expect(err).toBeInstanceOf(BadSignatureError);
      expect(err.message).toMatch(/targets/);
    } finally {
      overrides.clear();
    }
  });

  test("refuses a targets.json that is not the one the snapshot pins (mix-and-match)", async () => {
    const older = (await repo.metadata("targets.json"))!;
    await repo.addTargets({ "rpi-7": entry(7) });
    const s = await repo.versions();
    // 1. Served under the pinned name: length/hash pinned by the snapshot do not match.
    overrides.set(`${s.targets}.targets.json`, older);
    try {
      expect(await verify(await newDevice()).catch((e) => e)).toBeInstanceOf(MetadataMismatchError);
    } finally {
      overrides.clear();
    }
    // 2. A snapshot pinning only the version (no hash): the version check catches it.
    const snapshotKey = await loadKeyFile(join(keysDir, "snapshot.json"));
    const timestampKey = await loadKeyFile(join(keysDir, "timestamp.json"));
    const now = Date.now();
    const iso = (ms: number) => new Date(now + ms).toISOString().replace(/\.\d{3}Z$/, "Z");
    const snap = signMetadata(
      new Snapshot({ version: s.snapshot + 1, specVersion: "1.0.31", expires: iso(86400_000), meta: { "targets.json": new MetaFile({ version: s.targets }) } }),
      [snapshotKey],
    );
    const ts = signMetadata(
      new Timestamp({ version: s.timestamp + 1, specVersion: "1.0.31", expires: iso(3600_000), snapshotMeta: metaFileFor(snap, s.snapshot + 1) }),
      [timestampKey],
    );
    overrides.set("timestamp.json", ts);
    overrides.set(`${s.snapshot + 1}.snapshot.json`, snap);
    overrides.set(`${s.targets}.targets.json`, older);
    try {
      const err = await verify(await newDevice()).catch((e) => e);
      expect(err).toBeInstanceOf(MetadataMismatchError);
      expect(err.message).toMatch(/does not match snapshot version/);
    } finally {
      overrides.clear();
    }
  });

  test("refuses oversized metadata, with or without Content-Length", async () => {
    const dir = await newDevice();
    overrides.set("timestamp.json", new Uint8Array(100 << 10).fill(0x20));
    try {
      expect(await verify(dir).catch((e) => e)).toBeInstanceOf(MetadataTooLargeError);
    } finally {
      overrides.clear();
    }
    const s = await repo.versions();
    overrides.set(`${s.targets}.targets.json`, () => {
      const chunk = new Uint8Array(64 << 10).fill(0x20);
      let n = 0;
      return new Response(new ReadableStream({ pull: (c) => (n++ < 100 ? c.enqueue(chunk) : c.close()) }));
    });
    try {
      // The snapshot pins the real length, but the device cap applies whatever the metadata says.
      const err = await verify(dir, { sizeCaps: { targets: 1 << 20 } }).catch((e) => e);
      expect(err).toBeInstanceOf(MetadataTooLargeError);
    } finally {
      overrides.clear();
    }
    await verify(dir); // and nothing was broken by it
  });

  test("refuses to run without a trusted root, and recovers a torn one", async () => {
    const empty = join(work, "no-root");
    await mkdir(empty);
    const none = await verify(empty).catch((e) => e);
    expect(none).toBeInstanceOf(TrustedRootError);
    // Said in words, once: not with "ENOENT: no such file or directory, open '...'" after it.
    expect(describeError(none)).toEndWith(`no trusted root in ${empty}: the device needs its initial root.json`);
    await writeFile(join(empty, "root.json"), '{"signed": {"_ty');
    expect(describeError(await verify(empty).catch((e) => e))).toEndWith(
      `the trusted root ${join(empty, "root.json")} is unreadable (not JSON) and there is no backup (root.json.last-good)`,
    );
    const dir = await newDevice();
    await verify(dir);
    await writeFile(join(dir, "root.json"), '{"signed": {"_ty'); // a crash mid-write
    const got = await verify(dir);
    expect(Object.keys(got.targets).length).toBeGreaterThan(0);
  });

  test("reports an unreachable server as MetadataFetchError", async () => {
    const dir = await newDevice();
    const err = await verifyAndLoadTargets({ metadataDir: dir, metadataBaseUrl: "http://127.0.0.1:1/repo/", timeoutMs: 2000 }).catch((e) => e);
    expect(err).toBeInstanceOf(MetadataFetchError);
  });
});
