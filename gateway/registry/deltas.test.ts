import { afterAll, describe, expect, test } from "bun:test";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { applyLayerDelta, DeltaApplyError, DeltaMismatchError } from "../../lib/oci/delta.ts";
import { sha256 } from "../../lib/oci/digest.ts";
import { LayerDeltas } from "./deltas.ts";
import { RegistryStorage } from "./storage.ts";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** A registry dir holding two gzip (or `compress`ed) layers in repo "main/app", and a zstd wrapper that logs each run. */
async function setup(old: Uint8Array, next: Uint8Array, compress: (tar: Uint8Array) => Uint8Array = gzipSync) {
  const dir = await mkdtemp(join(tmpdir(), "deltas-"));
  dirs.push(dir);
  const storage = new RegistryStorage(join(dir, "registry"));
  const put = async (tar: Uint8Array) => {
    const gz = compress(tar);
    const digest = sha256(gz);
    const tmp = join(dir, "blob");
    await writeFile(tmp, gz);
    await storage.commitBlobFile(tmp, digest);
    await storage.linkBlob("main/app", digest);
    return { digest, gz, diffId: sha256(tar) };
  };
  const log = join(dir, "zstd.log");
  const zstd = join(dir, "zstd");
  await writeFile(zstd, `#!/bin/sh\necho run >> ${log}\nexec zstd "$@"\n`);
  await chmod(zstd, 0o755);
  return { dir, storage, from: await put(old), to: await put(next), zstd, runs: async () => (await readFile(log, "utf8").catch(() => "")).split("\n").filter(Boolean).length };
}

/** 8 MB of incompressible "files" and a copy with 256 kB in the middle changed. */
function layers() {
  const old = new Uint8Array(8 << 20);
  crypto.getRandomValues(old.subarray(0, 65536));
  for (let i = 65536; i < old.length; i += 65536) old.set(crypto.getRandomValues(new Uint8Array(65536)), i);
  const next = old.slice();
  next.set(crypto.getRandomValues(new Uint8Array(65536)), 4 << 20);
  next.set(crypto.getRandomValues(new Uint8Array(65536)), (4 << 20) + 65536);
  next.set(crypto.getRandomValues(new Uint8Array(65536)), (4 << 20) + 131072);
  next.set(crypto.getRandomValues(new Uint8Array(65536)), (4 << 20) + 196608);
  return { old, next };
}

describe("LayerDeltas", () => {
  test("computes a pair once for concurrent requests from two replicas, and the delta rebuilds the layer", async () => {
    const { old, next } = layers();
    const s = await setup(old, next);
    const a = new LayerDeltas(s.storage, { zstd: s.zstd });
    const b = new LayerDeltas(new RegistryStorage(s.storage.root), { zstd: s.zstd });
    const outcomes = await Promise.all([a.get("main/app", s.from.digest, s.to.digest), a.get("main/app", s.from.digest, s.to.digest), b.get("main/app", s.from.digest, s.to.digest)]);
    expect(await s.runs()).toBe(1);
    const first = outcomes[0]!;
    if (!("descriptor" in first)) throw new Error(`refused: ${first.refused}`);
    for (const o of outcomes) expect(o).toEqual(first);
    const d = first.descriptor;
    expect(d.size).toBeLessThan(400_000); // 256 kB changed out of 8 MB
    expect(await a.isDelta(d.digest)).toBe(true);
    expect(await a.isDelta(s.to.digest)).toBe(false);
    expect(await s.storage.blobSize("main/app", d.digest)).toBe(d.size);
    // A later request is served from the cache.
    await a.get("main/app", s.from.digest, s.to.digest);
    expect(await s.runs()).toBe(1);

    const out = join(s.dir, "rebuilt.tar");
    const r = await applyLayerDelta({ base: Bun.file(s.storage.blobPath(s.from.digest)), baseSize: d.fromSize, delta: Bun.file(s.storage.blobPath(d.digest)), diffId: s.to.diffId, out });
    expect(r.digest).toBe(s.to.diffId);
    expect(sha256(new Uint8Array(await readFile(out)))).toBe(s.to.diffId);
  });

  test("a delta checked against another diff_id, or a damaged frame, is refused and leaves no file", async () => {
    const { old, next } = layers();
    const s = await setup(old, next);
    const o = await new LayerDeltas(s.storage, { zstd: s.zstd }).get("main/app", s.from.digest, s.to.digest);
    if (!("descriptor" in o)) throw new Error(o.refused);
    const out = join(s.dir, "rebuilt.tar");
    const delta = Bun.file(s.storage.blobPath(o.descriptor.digest));
    const base = Bun.file(s.storage.blobPath(s.from.digest));
    await expect(applyLayerDelta({ base, baseSize: o.descriptor.fromSize, delta, diffId: s.from.diffId, out })).rejects.toThrow(DeltaMismatchError);
    expect(await Bun.file(out).exists()).toBe(false);
    const bytes = new Uint8Array(await delta.arrayBuffer());
    bytes[bytes.length >> 1]! ^= 0xff;
    await expect(applyLayerDelta({ base, baseSize: o.descriptor.fromSize, delta: new Blob([bytes]), diffId: s.to.diffId, out })).rejects.toThrow(DeltaApplyError);
    expect(await Bun.file(out).exists()).toBe(false);
  });

  test("refuses (and remembers) a delta over 3/4 of the layer, saying so", async () => {
    const a = crypto.getRandomValues(new Uint8Array(1 << 20).fill(0).map((_, i) => i & 0xff)).slice();
    const unrelated = new Uint8Array(1 << 20);
    for (let i = 0; i < unrelated.length; i += 65536) unrelated.set(crypto.getRandomValues(new Uint8Array(65536)), i);
    const s = await setup(a, unrelated);
    const deltas = new LayerDeltas(s.storage, { zstd: s.zstd });
    const o = await deltas.get("main/app", s.from.digest, s.to.digest);
    // The device prints this reason as is: it names the rule, not just the two sizes.
    expect("refused" in o && o.refused).toMatch(/^the delta \(1\.\d MiB\) is over 75% of the layer \(1\.\d MiB\): the layer costs about as much whole and needs no rebuild$/);
    await deltas.get("main/app", s.from.digest, s.to.digest);
    expect(await s.runs()).toBe(1);
  });

  test("without zstd on the host, the refusal says what to install, and the pair is made once zstd is there", async () => {
    const { old, next } = layers();
    const s = await setup(old, next);
    const missing = join(s.dir, "no-such-zstd");
    const o = await new LayerDeltas(s.storage, { zstd: missing }).get("main/app", s.from.digest, s.to.digest);
    expect("refused" in o && o.refused).toStartWith(`the gateway host cannot run zstd (${missing}: `);
    expect("refused" in o && o.refused).toEndWith("install zstd 1.5 or later there (Debian's zstd package) to make layer deltas");
    // Not remembered: the same pair is made as soon as zstd runs.
    const made = await new LayerDeltas(s.storage, { zstd: s.zstd }).get("main/app", s.from.digest, s.to.digest);
    expect("descriptor" in made).toBe(true);
  });

  test("zstd-compressed layers without zstd on the host: the same refusal, not a failed request", async () => {
    const { old, next } = layers();
    const s = await setup(old, next, (tar) => Bun.zstdCompressSync(tar));
    const missing = join(s.dir, "no-such-zstd");
    const o = await new LayerDeltas(s.storage, { zstd: missing }).get("main/app", s.from.digest, s.to.digest);
    expect("refused" in o && o.refused).toStartWith(`the gateway host cannot run zstd (${missing}: `);
    const made = await new LayerDeltas(s.storage, { zstd: s.zstd }).get("main/app", s.from.digest, s.to.digest);
    expect("descriptor" in made).toBe(true);
  });

  test("a zstd too old for --patch-from is not held against the pair: the delta is made once zstd is upgraded", async () => {
    const { old, next } = layers();
    const s = await setup(old, next);
    const oldZstd = join(s.dir, "zstd-1.4");
    await writeFile(oldZstd, `#!/bin/sh\necho "zstd: error: unknown argument: --patch-from" >&2\nexit 1\n`);
    await chmod(oldZstd, 0o755);
    const o = await new LayerDeltas(s.storage, { zstd: oldZstd }).get("main/app", s.from.digest, s.to.digest);
    expect("refused" in o && o.refused).toBe("zstd failed on the gateway host (exit 1, zstd 1.5 or later is needed for --patch-from): zstd: error: unknown argument: --patch-from");
    const made = await new LayerDeltas(s.storage, { zstd: s.zstd }).get("main/app", s.from.digest, s.to.digest);
    expect("descriptor" in made).toBe(true);
  });

  test("a stored layer damaged on disk fails the pair naming its digest and file, not only zlib's words", async () => {
    const { old, next } = layers();
    const s = await setup(old, next);
    const path = s.storage.blobPath(s.to.digest);
    const bytes = await readFile(path);
    bytes[bytes.length >> 1]! ^= 0xff;
    await writeFile(path, bytes);
    const err = await new LayerDeltas(s.storage, { zstd: s.zstd }).get("main/app", s.from.digest, s.to.digest).then(() => undefined, (e: Error) => e);
    expect(err?.message).toContain(`Cannot unpack the stored layer ${s.to.digest} (${path}) to make a delta: `);
    expect(err?.message).toContain(`the file may be damaged (check: sha256sum ${path})`);
  });

  test("a layer not in the repository is a 404", async () => {
    const { old, next } = layers();
    const s = await setup(old, next);
    await expect(new LayerDeltas(s.storage).get("other/app", s.from.digest, s.to.digest)).rejects.toMatchObject({ status: 404 });
  });
});
