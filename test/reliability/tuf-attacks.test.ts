/**
 * Attacks TUF exists to stop, against the real device client (lib/tuf
 * verifyAndLoadTargets) and the gateway's TufRepo served over HTTP on
 * 127.0.0.1 by an "attacker" who may replace any file. Each attack is refused
 * with its error class and leaves the device's trusted metadata byte for byte
 * as it was; the honest repository still verifies afterwards.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MetaFile, Snapshot, Timestamp } from "@tufjs/models";
import { EMPTY_SHA256, type TargetEntry } from "../../lib/api/target.ts";
import {
  BadSignatureError,
  ExpiredMetadataError,
  MetadataMismatchError,
  MetadataTooLargeError,
  RollbackError,
  TufVerificationError,
  expiresAt,
  generateKey,
  loadKeyFile,
  metaFileFor,
  parseMetadata,
  signJson,
  signMetadata,
  verifyAndLoadTargets,
  type TufKeyPair,
} from "../../lib/tuf/index.ts";
import { MemoryTufStorage, TufRepo } from "../../gateway/ota/index.ts";
import { Tally } from "./_tally.ts";

const tally = new Tally("tuf");
const entry = (version: number): TargetEntry => ({
  length: 0,
  hashes: { sha256: EMPTY_SHA256 },
  custom: { version: String(version), hardwareIds: ["rpi"], tags: ["main"], docker_compose_apps: { web: { uri: `127.0.0.1:5000/main/web@sha256:${"a".repeat(64)}` } } },
});

let work: string;
let keysDir: string;
let repo: TufRepo;
let server: ReturnType<typeof Bun.serve>;
let baseUrl: string;
let devices = 0;
/** What the attacker serves instead of the repository's file. */
const evil = new Map<string, Uint8Array | (() => Response)>();

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "rel-tuf-"));
  keysDir = join(work, "keys");
  repo = await TufRepo.open({ storage: new MemoryTufStorage(), keysDir });
  await repo.addTargets({ "rpi-1": entry(1) });
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    async fetch(req) {
      const name = new URL(req.url).pathname.replace(/^\/repo\//, "");
      const o = evil.get(name);
      if (typeof o === "function") return o();
      const bytes = o ?? (await repo.metadata(name));
      return bytes ? new Response(bytes) : new Response("not found", { status: 404 });
    },
  });
  baseUrl = `http://127.0.0.1:${server.port}/repo/`;
});

afterAll(async () => {
  tally.print();
  await server?.stop(true);
  await rm(work, { recursive: true, force: true });
});

const verify = (dir: string, sizeCaps?: { targets?: number }) => verifyAndLoadTargets({ metadataDir: dir, metadataBaseUrl: baseUrl, sizeCaps });
const key = (role: string): Promise<TufKeyPair> => loadKeyFile(join(keysDir, `${role}.json`));
const iso = (s: number) => expiresAt(new Date(), s);

/** A device holding root v1 that has verified the honest repository once (unless `fresh`). */
async function device(fresh = false): Promise<string> {
  const dir = join(work, `device-${++devices}`);
  await mkdir(dir);
  await writeFile(join(dir, "root.json"), (await repo.metadata("1.root.json"))!);
  if (!fresh) await verify(dir);
  return dir;
}

/**
 * What the device trusts: root.json and targets.json (what it would install). A valid
 * timestamp/snapshot signed with the online keys may legitimately be kept even when the
 * targets behind them are refused.
 */
async function snapshotDir(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const f of (await readdir(dir)).filter((f) => f === "root.json" || f === "targets.json").sort()) out[f] = (await readFile(join(dir, f))).toString("base64");
  return out;
}

/** Runs one attack on a fresh device: refused with `expected`, trusted files unchanged, honest repo still fine. */
async function attack(
  name: string,
  expected: abstract new (...a: never[]) => Error,
  files: Record<string, Uint8Array | (() => Response)>,
  /** recheck: false when the attacker holds the online keys: the device then keeps their (validly signed) timestamp. */
  opts: { caps?: { targets?: number }; fresh?: boolean; recheck?: boolean } = {},
) {
  const dir = await device(opts.fresh);
  const before = await snapshotDir(dir);
  for (const [f, b] of Object.entries(files)) evil.set(f, b);
  try {
    await tally.refuses(name, expected, () => verify(dir, opts.caps));
  } finally {
    evil.clear();
  }
  expect(await snapshotDir(dir)).toEqual(before);
  if (opts.recheck !== false) expect(Object.keys((await verify(dir)).targets)).toContain("rpi-1");
}

/** Timestamp + snapshot chain (signed with the real online keys) pointing at `targetsBytes` as version `tv`. */
async function chainFor(targetsBytes: Uint8Array, tv: number, snapshotMetaOverride?: Record<string, unknown>) {
  const v = await repo.versions();
  const snap = signMetadata(
    new Snapshot({ version: v.snapshot + 1, specVersion: "1.0.31", expires: iso(86400), meta: { "targets.json": metaFileFor(targetsBytes, tv), ...snapshotMetaOverride } as never }),
    [await key("snapshot")],
  );
  const ts = signMetadata(new Timestamp({ version: v.timestamp + 1, specVersion: "1.0.31", expires: iso(3600), snapshotMeta: metaFileFor(snap, v.snapshot + 1) }), [await key("timestamp")]);
  return { [`${v.snapshot + 1}.snapshot.json`]: snap, "timestamp.json": ts };
}

describe("TUF attacks against the device client", () => {
  test("rollback: an older timestamp than the device trusts is refused", async () => {
    const old = (await repo.metadata("timestamp.json"))!;
    const dir = await device();
    await repo.addTargets({ "rpi-2": entry(2) });
    await verify(dir);
    const before = await snapshotDir(dir);
    evil.set("timestamp.json", old);
    try {
      await tally.refuses("rollback of timestamp.json", RollbackError, () => verify(dir));
    } finally {
      evil.clear();
    }
    expect(await snapshotDir(dir)).toEqual(before);
  });

  test("rollback: a targets.json version older than the trusted one is refused", async () => {
    const v = await repo.versions();
    const targetsKey = await key("targets");
    const oldTargets = signJson({ _type: "targets", spec_version: "1.0.31", version: v.targets - 1, expires: iso(86400), targets: { "rpi-1": entry(1) } }, [targetsKey]);
    await attack("rollback of targets.json (signed, lower version)", TufVerificationError, { [`${v.targets - 1}.targets.json`]: oldTargets, ...(await chainFor(oldTargets, v.targets - 1)) }, { recheck: false });
  });

  test("freeze: a correctly signed but expired timestamp is refused", async () => {
    const v = await repo.versions();
    const snap = (await repo.metadata("snapshot.json"))!;
    const ts = signMetadata(new Timestamp({ version: v.timestamp + 1, specVersion: "1.0.31", expires: iso(-3600), snapshotMeta: metaFileFor(snap, v.snapshot) }), [await key("timestamp")]);
    await attack("freeze: expired timestamp", ExpiredMetadataError, { "timestamp.json": ts });
  });

  test("freeze: an expired targets.json behind a fresh timestamp is refused", async () => {
    const v = await repo.versions();
    const t = signJson({ _type: "targets", spec_version: "1.0.31", version: v.targets + 1, expires: iso(-60), targets: { "rpi-1": entry(1) } }, [await key("targets")]);
    await attack("freeze: expired targets.json", ExpiredMetadataError, { [`${v.targets + 1}.targets.json`]: t, ...(await chainFor(t, v.targets + 1)) }, { recheck: false });
  });

  test("mix-and-match: a targets.json other than the one the snapshot pins is refused", async () => {
    const v = await repo.versions();
    const other = signJson({ _type: "targets", spec_version: "1.0.31", version: v.targets, expires: iso(86400), targets: {} }, [await key("targets")]);
    await attack("mix-and-match: targets.json swapped under the pinned version", MetadataMismatchError, { [`${v.targets}.targets.json`]: other }, { fresh: true });
  });

  test("mix-and-match: a snapshot other than the one the timestamp pins is refused", async () => {
    const v = await repo.versions();
    const snap = signMetadata(new Snapshot({ version: v.snapshot, specVersion: "1.0.31", expires: iso(86400), meta: { "targets.json": metaFileFor(new Uint8Array(1), v.targets) } }), [await key("snapshot")]);
    await attack("mix-and-match: snapshot swapped under the pinned version", MetadataMismatchError, { [`${v.snapshot}.snapshot.json`]: snap }, { fresh: true });
  });

  test("signatures below threshold: an unsigned timestamp is refused", async () => {
    const ts = JSON.parse(new TextDecoder().decode((await repo.metadata("timestamp.json"))!));
    ts.signed.version += 1;
    ts.signatures = [];
    await attack("timestamp with no signature (0 of threshold 1)", BadSignatureError, { "timestamp.json": new TextEncoder().encode(JSON.stringify(ts)) });
  });

  test("signatures below threshold: a new root signed by 1 of the 2 keys it requires is refused", async () => {
    const root = parseMetadata("root", (await repo.metadata("root.json"))!).signed.toJSON() as Record<string, any>;
    const [k1, k2] = [generateKey(), generateKey()];
    const v = root.version + 1;
    root.version = v;
    root.keys[k1.keyId] = k1.publicKey;
    root.keys[k2.keyId] = k2.publicKey;
    root.roles.root = { keyids: [k1.keyId, k2.keyId], threshold: 2 };
    const bytes = signJson(root, [await key("root"), k1]);
    await attack("root rotation signed by 1 of 2 new root keys", BadSignatureError, { [`${v}.root.json`]: bytes });
  });

  test("wrong keys: metadata signed by keys the root does not trust is refused", async () => {
    const rogue = generateKey();
    const v = await repo.versions();
    const t = signJson({ _type: "targets", spec_version: "1.0.31", version: v.targets + 1, expires: iso(86400), targets: { "rpi-evil": entry(99) } }, [rogue]);
    await attack("targets.json signed by a rogue key (online keys stolen)", BadSignatureError, { [`${v.targets + 1}.targets.json`]: t, ...(await chainFor(t, v.targets + 1)) }, { recheck: false });
    const snap = (await repo.metadata("snapshot.json"))!;
    const ts = signMetadata(new Timestamp({ version: v.timestamp + 1, specVersion: "1.0.31", expires: iso(3600), snapshotMeta: metaFileFor(snap, v.snapshot) }), [rogue]);
    await attack("timestamp signed by a rogue key", BadSignatureError, { "timestamp.json": ts });
    const root = parseMetadata("root", (await repo.metadata("root.json"))!).signed.toJSON() as Record<string, any>;
    root.version += 1;
    root.keys[rogue.keyId] = rogue.publicKey;
    root.roles.root = { keyids: [rogue.keyId], threshold: 1 };
    await attack("root rotation signed only by a rogue key", BadSignatureError, { [`${root.version}.root.json`]: signJson(root, [rogue]) });
  });

  test("oversized metadata is refused before it is parsed", async () => {
    await attack("timestamp.json of 100 KiB (cap 16 KiB)", MetadataTooLargeError, { "timestamp.json": new Uint8Array(100 << 10).fill(0x20) });
    const v = await repo.versions();
    await attack(
      "targets.json streamed without Content-Length past the cap",
      MetadataTooLargeError,
      {
        ...(await chainFor(new Uint8Array(0), v.targets + 1, { "targets.json": new MetaFile({ version: v.targets + 1 }) })),
        [`${v.targets + 1}.targets.json`]: () => {
          const chunk = new Uint8Array(64 << 10).fill(0x20);
          let n = 0;
          return new Response(new ReadableStream({ pull: (c) => (n++ < 64 ? c.enqueue(chunk) : c.close()) }));
        },
      },
      { caps: { targets: 1 << 20 }, recheck: false },
    );
  });

  test("garbage instead of JSON is refused", async () => {
    await attack("timestamp.json that is not JSON", TufVerificationError, { "timestamp.json": new TextEncoder().encode("{not json") });
  });
});
