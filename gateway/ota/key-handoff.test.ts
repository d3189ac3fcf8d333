import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { cp, mkdtemp, rm } from "node:fs/promises";
import { createPrivateKey, generateKeyPairSync } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EMPTY_SHA256, type TargetEntry } from "../../lib/api/target.ts";
import { generateKey, loadKeyFile, saveKeyFile } from "../../lib/tuf/keys.ts";
import { expiresAt, parseMetadata } from "../../lib/tuf/metadata.ts";
import { draftNextRoot, signRoot } from "../../lib/tuf/root-ceremony.ts";
import { SqliteStore } from "../store/sqlite.ts";
import { KeyHandoff, KeyHandoffError } from "./key-handoff.ts";
import { SigningKeyUnavailableError } from "./key-store.ts";
import { TufRepo, type AdoptedKey } from "./repo.ts";

// Two replicas: one database, each its own copy of the data dir's keys, the same CA key.
const caKey = () => generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }).toString();
const entry = (version: number): TargetEntry => ({
  length: 0,
  hashes: { sha256: EMPTY_SHA256 },
  custom: { version: String(version), hardwareIds: ["rpi"], tags: ["main"], docker_compose_apps: {} },
});

let dir: string;
let store: SqliteStore;
let secret: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "key-handoff-"));
  store = await SqliteStore.open(":memory:");
  secret = caKey();
});
afterEach(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

async function replicas(bSecret = secret) {
  const adopted: AdoptedKey[] = [];
  const a = await TufRepo.open({ storage: store.tuf, keysDir: join(dir, "a"), handoff: new KeyHandoff(secret, store) });
  await cp(join(dir, "a"), join(dir, "b"), { recursive: true }); // the copy made after the first start
  const b = await TufRepo.open({ storage: store.tuf, keysDir: join(dir, "b"), handoff: new KeyHandoff(bSecret, store), onKeysAdopted: (t) => adopted.push(...t) });
  return { a, b, adopted };
}
const rootOf = async (repo: TufRepo) => parseMetadata("root", await repo.trustedRoot()).signed;

describe("online keys rotated on one replica reach the others through the database", () => {
  test("a timestamp key rotated on A: B takes it and re-signs the timestamp", async () => {
    const { a, b, adopted } = await replicas();
    const { keyId } = await a.rotate("timestamp");
    const before = (await b.versions()).timestamp;
    expect((await b.refreshTimestamp()).refreshed).toEqual([]); // nothing due: but the key is taken already
    await b.bumpViews(); // signs a new timestamp on B
    expect((await b.versions()).timestamp).toBe(before + 1);
    expect((await loadKeyFile(join(dir, "b", "timestamp.json"))).keyId).toBe(keyId);
    expect(adopted).toEqual([{ role: "timestamp", keyId, path: join(dir, "b", "timestamp.json") }]);
    expect((await rootOf(b)).roles.timestamp!.keyIDs).toEqual([keyId]);
  });

  test("a targets key rotated on A: a publish on B lands; the adoption is taken once, so a key removed after stays offline", async () => {
    const { a, b } = await replicas();
    await a.rotate("targets");
    await b.addTargets({ "rpi-1": entry(1) });
    expect(Object.keys((await a.targets()).targets)).toEqual(["rpi-1"]);
    // The operator takes targets offline on B: neither B nor B restarted brings the key back.
    await rm(join(dir, "b", "targets.json"));
    await expect(b.addTargets({ "rpi-2": entry(2) })).rejects.toThrow(SigningKeyUnavailableError);
    const b2 = await TufRepo.open({ storage: store.tuf, keysDir: join(dir, "b"), handoff: new KeyHandoff(secret, store) });
    await expect(b2.addTargets({ "rpi-2": entry(2) })).rejects.toThrow(SigningKeyUnavailableError);
    expect(await b2.adoptKeys()).toEqual([]);
  });

  test("a root pushed from the ceremony with a new timestamp key held by A only: B signs with it", async () => {
    const { a, b } = await replicas();
    const rootKey = await loadKeyFile(join(dir, "a", "root.json"));
    const ts = generateKey();
    await saveKeyFile(join(dir, "a", "timestamp-2.json"), ts);
    const v2 = signRoot(draftNextRoot(await a.trustedRoot(), { expires: expiresAt(new Date(), 86_400 * 30), keys: { timestamp: [ts] } }), rootKey);
    await a.updateRoot(v2);
    const { adopted } = { adopted: await b.adoptKeys() };
    expect(adopted.map((k) => [k.role, k.keyId])).toEqual([["timestamp", ts.keyId]]);
    await b.bumpViews();
    const signed = JSON.parse(new TextDecoder().decode((await b.metadata("timestamp.json"))!)) as { signatures: { keyid: string }[] };
    expect(signed.signatures.map((s) => s.keyid)).toEqual([ts.keyId]);
  });

  test("a copy whose CA key PEM was re-encoded (same key) still opens it", async () => {
    const { a } = await replicas();
    const { keyId } = await a.rotate("timestamp");
    const reencoded = createPrivateKey(secret).export({ type: "sec1", format: "pem" }).toString();
    expect(reencoded).not.toBe(secret);
    expect(await new KeyHandoff(reencoded, store).take(keyId)).toMatchObject({ keyId });
  });

  test("the database alone does not reveal a key, and another CA cannot open it", async () => {
    const { a, b } = await replicas(caKey());
    const { keyId } = await a.rotate("snapshot");
    const sealed = (await store.readMeta(`tuf-key:${keyId}`))!;
    expect(sealed).toStartWith("v1.");
    expect(sealed).not.toContain("PRIVATE KEY");
    expect(Buffer.from(sealed.slice(3), "base64url").toString("latin1")).not.toContain("PRIVATE KEY");
    await expect(b.bumpViews()).rejects.toThrow(KeyHandoffError);
    await expect(b.adoptKeys()).rejects.toThrow(/does not open with this data dir's CA key/);
    expect(await new KeyHandoff(secret, store).take(keyId)).toMatchObject({ keyId });
  });

  test("without the handoff (one gateway, or before it existed) a stale replica cannot sign: what the handoff fixes", async () => {
    const a = await TufRepo.open({ storage: store.tuf, keysDir: join(dir, "a") });
    await cp(join(dir, "a"), join(dir, "b"), { recursive: true });
    const b = await TufRepo.open({ storage: store.tuf, keysDir: join(dir, "b") });
    await a.rotate("timestamp");
    await expect(b.bumpViews()).rejects.toThrow(/is not the timestamp key root.json trusts/);
  });
});
