/**
 * The root key kept offline, checked with the device's TUF client (lib/tuf
 * verifyAndLoadTargets: tuf-js) against the gateway's TufRepo served over
 * HTTP on 127.0.0.1:
 * - a root moved to 2-of-3 offline keys is installed only with two signatures
 *   (and the old root's), and devices follow it; a next root signed by one key
 *   is refused by the gateway and, served by a compromised server, by devices;
 * - targets moved to 2-of-2 keys: the gateway signs with both, and neither it
 *   nor a device accepts targets signed by one;
 * - with neither the root nor the targets key in the keys dir, eight days of
 *   timestamp and snapshot re-signing (clock faked for gateway and devices
 *   alike) keep every device verifying; skipping the re-signing breaks them.
 */
import { afterAll, beforeAll, describe, expect, setSystemTime, test } from "bun:test";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { Snapshot, Timestamp } from "@tufjs/models";
import { join } from "node:path";
import {
  BadSignatureError,
  ExpiredMetadataError,
  draftNextRoot,
  expiresAt,
  generateKey,
  loadKeyFile,
  metaFileFor,
  parseMetadata,
  rootSignatureStatus,
  saveKeyFile,
  signJson,
  signMetadata,
  signRoot,
  verifyAndLoadTargets,
  type TufKeyPair,
} from "../../lib/tuf/index.ts";
import { MemoryTufStorage, RootNotTrustedError, SigningKeyUnavailableError, TufRepo } from "../../gateway/ota/index.ts";
import { serveRepo, targetEntry, type RepoServer } from "./_repo-server.ts";

const entry = (version: number) => targetEntry(version);

let work: string;
let keysDir: string;
let offlineDir: string;
let repo: TufRepo;
let server: RepoServer;
let baseUrl: string;
/** Files a compromised server answers with instead of the repository's. */
let overrides: RepoServer["overrides"];
let devices = 0;
// Root keys of three holders: generated and kept outside the gateway's keys dir.
const [alice, bob, carol, mallory] = [generateKey(), generateKey(), generateKey(), generateKey()];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "tuf-offline-"));
  keysDir = join(work, "gateway", "tuf", "keys");
  offlineDir = join(work, "offline");
  await mkdir(offlineDir, { recursive: true });
  repo = await TufRepo.open({ storage: new MemoryTufStorage(), keysDir });
  server = serveRepo(() => repo);
  ({ baseUrl, overrides } = server);
});

afterAll(async () => {
  setSystemTime();
  await server?.stop();
  await rm(work, { recursive: true, force: true });
});

async function newDevice(root: Uint8Array): Promise<string> {
  const dir = join(work, `device-${++devices}`);
  await mkdir(dir);
  await writeFile(join(dir, "root.json"), root);
  return dir;
}
const verify = (metadataDir: string) => verifyAndLoadTargets({ metadataDir, metadataBaseUrl: baseUrl });
const deviceRootVersion = async (dir: string) => parseMetadata("root", await readFile(join(dir, "root.json"))).signed.version;
const sign = (draft: Uint8Array, keys: TufKeyPair[], previous?: Uint8Array) => keys.reduce((d, k) => signRoot(d, k, previous), draft);

describe("root kept offline with threshold 2 of 3", () => {
  let v1: Uint8Array;
  let deviceOnV1: string;

  test("the next root is refused with one new-root signature or without the old root's, installed with both thresholds", async () => {
    v1 = await repo.trustedRoot();
    await repo.addTargets({ "rpi-1": entry(1) });
    deviceOnV1 = await newDevice(v1);
    expect(Object.keys((await verify(deviceOnV1)).targets)).toEqual(["rpi-1"]);

    const onlineRoot = await loadKeyFile(join(keysDir, "root.json"));
    const draft = draftNextRoot(v1, { keys: { root: [alice, bob, carol] }, thresholds: { root: 2 }, expires: expiresAt(new Date(), 365 * 86400) });
    const oneSignature = sign(draft, [onlineRoot, alice], v1);
    expect(rootSignatureStatus(oneSignature, v1).map((s) => [s.of, s.signed.length, s.threshold, s.met])).toEqual([
      ["new", 1, 2, false],
      ["previous", 1, 1, true],
    ]);
    await expect(repo.updateRoot(oneSignature)).rejects.toThrow(RootNotTrustedError);
    await expect(repo.updateRoot(sign(draft, [alice, bob]))).rejects.toThrow(/not signed by 1 of the 1 current root keys/);
    expect((await repo.versions()).root).toBe(1);

    const twoSignatures = signRoot(oneSignature, bob, v1);
    expect((await repo.updateRoot(twoSignatures)).version).toBe(2);
    // The online root key no root trusts any more is gone from the server.
    expect((await readdir(keysDir)).sort()).toEqual(["snapshot.json", "targets.json", "timestamp.json"]);
    const served = parseMetadata("root", await repo.trustedRoot()).signed;
    expect(served.roles.root!.threshold).toBe(2);
    expect(served.roles.root!.keyIDs.sort()).toEqual([alice.keyId, bob.keyId, carol.keyId].sort());
  });

  test("devices holding root v1 follow to the 2-of-3 root and keep verifying", async () => {
    expect(Object.keys((await verify(deviceOnV1)).targets)).toEqual(["rpi-1"]);
    expect(await deviceRootVersion(deviceOnV1)).toBe(2);
    const fresh = await newDevice(v1);
    await verify(fresh);
    expect(await deviceRootVersion(fresh)).toBe(2);
  });

  test("a root v3 signed by one of the three keys is refused by the gateway and by devices it is served to", async () => {
    const v2 = await repo.trustedRoot();
    // One stolen key (alice) plus the attacker's own: hand root to mallory.
    const evil = sign(draftNextRoot(v2, { keys: { root: [mallory] }, expires: expiresAt(new Date(), 86400) }), [alice, mallory], v2);
    expect(rootSignatureStatus(evil, v2).find((s) => s.of === "previous")).toMatchObject({ signed: [alice.keyId], met: false });
    await expect(repo.updateRoot(evil)).rejects.toThrow(/not signed by 2 of the 3 current root keys/);

    overrides.set("3.root.json", evil);
    try {
      const err = await verify(deviceOnV1).catch((e) => e);
      expect(err).toBeInstanceOf(BadSignatureError);
      expect(err.message).toMatch(/root/);
      expect(await deviceRootVersion(deviceOnV1)).toBe(2);
    } finally {
      overrides.clear();
    }
  });

  test("a root v3 signed by two of the three keys moves targets to 2 of 2 keys; devices need both signatures", async () => {
    const v2 = await repo.trustedRoot();
    const [t1, t2] = [generateKey(), generateKey()];
    // The new targets keys are put in place first: the gateway refuses a root naming keys it cannot use.
    const v3 = sign(draftNextRoot(v2, { keys: { targets: [t1, t2] }, thresholds: { targets: 2 }, expires: expiresAt(new Date(), 365 * 86400) }), [bob, carol], v2);
    await saveKeyFile(join(keysDir, "targets-a.json"), t1);
    await expect(repo.updateRoot(v3)).rejects.toThrow(/does not hold 2 of the targets keys/);
    await saveKeyFile(join(keysDir, "targets-b.json"), t2);
    expect(await repo.updateRoot(v3)).toEqual({ version: 3, refreshed: ["root", "targets", "snapshot", "timestamp"] });
    await rm(join(keysDir, "targets.json")); // the old targets key: no longer trusted
    await repo.addTargets({ "rpi-2": entry(2) });
    const targets = parseMetadata("targets", (await repo.metadata("targets.json"))!);
    expect(Object.keys(targets.signatures).sort()).toEqual([t1.keyId, t2.keyId].sort());
    expect(Object.keys((await verify(deviceOnV1)).targets).sort()).toEqual(["rpi-1", "rpi-2"]);
    expect(await deviceRootVersion(deviceOnV1)).toBe(3);

    // One targets key alone signs nothing, on the gateway or for devices.
    await rename(join(keysDir, "targets-b.json"), join(offlineDir, "targets-b.json"));
    await expect(repo.addTargets({ "rpi-3": entry(3) })).rejects.toThrow(/only 1 of the 2 targets keys/);
    const s = await repo.versions();
    const oneKey = signJson({ ...(targets.signed.toJSON() as Record<string, unknown>), version: s.targets + 1 }, [t1]);
    overrides.set(`${s.targets + 1}.targets.json`, oneKey);
    const snap = await loadKeyFile(join(keysDir, "snapshot.json"));
    const ts = await loadKeyFile(join(keysDir, "timestamp.json"));
    const evilSnapshot = signMetadata(new Snapshot({ version: s.snapshot + 1, specVersion: "1.0.31", expires: expiresAt(new Date(), 86400), meta: { "targets.json": metaFileFor(oneKey, s.targets + 1) } }), [snap]);
    overrides.set(`${s.snapshot + 1}.snapshot.json`, evilSnapshot);
    overrides.set("timestamp.json", signMetadata(new Timestamp({ version: s.timestamp + 1, specVersion: "1.0.31", expires: expiresAt(new Date(), 3600), snapshotMeta: metaFileFor(evilSnapshot, s.snapshot + 1) }), [ts]));
    try {
      const err = await verify(deviceOnV1).catch((e) => e);
      expect(err).toBeInstanceOf(BadSignatureError);
      expect(err.message).toMatch(/targets/);
    } finally {
      overrides.clear();
    }
    await rename(join(offlineDir, "targets-b.json"), join(keysDir, "targets-b.json"));
  });
});

describe("no root or targets key on the gateway", () => {
  test("eight days of re-signing keep devices verifying; a day without it expires them", async () => {
    // Targets signed offline from here on: the key leaves the gateway.
    for (const f of ["targets-a.json", "targets-b.json"]) await rename(join(keysDir, f), join(offlineDir, f));
    expect((await readdir(keysDir)).sort()).toEqual(["snapshot.json", "timestamp.json"]);
    await expect(repo.addTargets({ "rpi-3": entry(3) })).rejects.toThrow(SigningKeyUnavailableError);

    const device = await newDevice((await repo.metadata("1.root.json"))!);
    const start = Date.now();
    const before = await repo.versions();
    const resigned: Record<string, number> = { timestamp: 0, snapshot: 0 };
    const STEP = 5 * 60_000; // the refresh timer's default interval
    try {
      for (let t = 0; t <= 8 * 86400_000; t += STEP) {
        setSystemTime(new Date(start + t));
        const r = await repo.refreshTimestamp();
        expect(r.needsOfflineKey).toEqual([]);
        for (const role of r.refreshed) resigned[role] = (resigned[role] ?? 0) + 1;
        if (t % (6 * 3600_000) === 0) expect(Object.keys((await verify(device)).targets).sort()).toEqual(["rpi-1", "rpi-2"]);
      }
      // Timestamp (1 day, re-signed 6 h before expiry) about every 18 h; snapshot (7 days) once.
      expect(resigned).toEqual({ timestamp: 10, snapshot: 1 });
      const after = await repo.versions();
      expect(after.root).toBe(before.root);
      expect(after.targets).toBe(before.targets);

      // The same gateway without its re-signing: one day later devices refuse the stale timestamp.
      setSystemTime(new Date(start + 9 * 86400_000 + 3600_000));
      const err = await verify(device).catch((e) => e);
      expect(err).toBeInstanceOf(ExpiredMetadataError);
      expect((await repo.refreshTimestamp()).refreshed).toContain("timestamp");
      expect(Object.keys((await verify(device)).targets)).toHaveLength(2);
    } finally {
      setSystemTime();
    }
  });
});
