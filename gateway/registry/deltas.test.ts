import { afterAll, describe, expect, test } from "bun:test";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { applyLayerDelta, DeltaApplyError, DeltaMismatchError } from "../../lib/oci/delta.ts";
import { sha256 } from "../../lib/oci/digest.ts";
import { LayerDeltas } from "./deltas.ts";
import { OCI_MANIFEST } from "./manifest.ts";
import { RegistryStorage } from "./storage.ts";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/**
 * A registry dir with repo "main/app", where `put` stores a layer (gzip, or `compress`ed) as the
 * image manifest `tag` of it alone, and a zstd wrapper that logs each run (start and end, for overlaps).
 */
async function registryDir(compress: (tar: Uint8Array) => Uint8Array = gzipSync, o: { zstdDelay?: number } = {}) {
  const dir = await mkdtemp(join(tmpdir(), "deltas-"));
  dirs.push(dir);
  const storage = new RegistryStorage(join(dir, "registry"));
  const store = async (bytes: Uint8Array) => {
    const digest = sha256(bytes);
    const tmp = join(dir, "blob");
    await writeFile(tmp, bytes);
    await storage.commitBlobFile(tmp, digest);
    await storage.linkBlob("main/app", digest);
    return digest;
  };
  const configBytes = new TextEncoder().encode(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } }));
  const config = { mediaType: "application/vnd.oci.image.config.v1+json", digest: await store(configBytes), size: configBytes.byteLength };
  const put = async (tar: Uint8Array, tag: string) => {
    const gz = compress(tar);
    const digest = await store(gz);
    const manifest = { schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest, size: gz.byteLength }] };
    await storage.putManifest("main/app", tag, new TextEncoder().encode(JSON.stringify(manifest)), OCI_MANIFEST);
    return { digest, gz, diffId: sha256(tar) };
  };
  const log = join(dir, "zstd.log");
  const zstd = join(dir, "zstd");
  // zstdDelay: each run takes that many seconds more (a big layer's), so runs overlap as in the field.
  await writeFile(zstd, `#!/bin/sh\necho run >> ${log}\n${o.zstdDelay ? `sleep ${o.zstdDelay}\n` : ""}zstd "$@"\nrc=$?\necho end >> ${log}\nexit $rc\n`);
  await chmod(zstd, 0o755);
  const lines = async () => (await readFile(log, "utf8").catch(() => "")).split("\n").filter(Boolean);
  /** The most zstd runs at once, from the log's order of starts and ends. */
  const peak = async () => (await lines()).reduce((acc, l) => ((acc.now += l === "run" ? 1 : -1), (acc.max = Math.max(acc.max, acc.now)), acc), { now: 0, max: 0 }).max;
  return { dir, storage, put, config, zstd, runs: async () => (await lines()).filter((l) => l === "run").length, peak };
}

/** {@link registryDir} with two layers, `from` (tag v1) and `to` (tag v2). */
async function setup(old: Uint8Array, next: Uint8Array, compress: (tar: Uint8Array) => Uint8Array = gzipSync) {
  const r = await registryDir(compress);
  return { ...r, from: await r.put(old, "v1"), to: await r.put(next, "v2") };
}

/** `n` images v1..vn in {@link registryDir} `r`, each one 2 MB layer differing from the others in 64 kB. */
async function versionsIn(r: Awaited<ReturnType<typeof registryDir>>, n: number): Promise<{ digest: string }[]> {
  const base = layers().old.subarray(0, 2 << 20);
  const versions: { digest: string }[] = [];
  for (let v = 1; v <= n; v++) {
    const tar = base.slice();
    tar.set(crypto.getRandomValues(new Uint8Array(65536)), v * 65536);
    versions.push(await r.put(tar, `v${v}`));
  }
  return versions;
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

  test("a pair naming a blob that no image manifest of the repository lists as a layer is refused without running zstd", async () => {
    const { old, next } = layers();
    const s = await setup(old, next);
    const deltas = new LayerDeltas(s.storage, { zstd: s.zstd });
    const notLayer = (d: string) => `${d} is not a layer of any image manifest in repository "main/app"`;
    // The image config is in the repository, but is no layer.
    expect(await deltas.get("main/app", s.from.digest, s.config.digest)).toEqual({ refused: notLayer(s.config.digest) });
    // Nor is a blob pushed that no manifest names, nor a delta made before.
    const loose = sha256(gzipSync(next.slice(0, 1 << 20)));
    await writeFile(join(s.dir, "blob"), gzipSync(next.slice(0, 1 << 20)));
    await s.storage.commitBlobFile(join(s.dir, "blob"), loose);
    await s.storage.linkBlob("main/app", loose);
    expect(await deltas.get("main/app", loose, s.config.digest)).toEqual({ refused: `${loose} and ${s.config.digest} are not a layer of any image manifest in repository "main/app"` });
    expect(await s.runs()).toBe(0);
    const made = await deltas.get("main/app", s.from.digest, s.to.digest);
    if (!("descriptor" in made)) throw new Error(made.refused);
    expect(await deltas.get("main/app", made.descriptor.digest, s.to.digest)).toEqual({ refused: notLayer(made.descriptor.digest) });
    // A layer whose manifest was deleted is no longer one.
    await s.storage.deleteManifest("main/app", (await s.storage.resolve("main/app", "v1")).digest);
    expect(await deltas.get("main/app", s.from.digest, s.to.digest)).toEqual({ refused: notLayer(s.from.digest) });
    expect(await s.runs()).toBe(1);
  });

  test("distinct pairs at once: no more than maxConcurrent zstd runs, maxQueued wait, the rest refused at once and made when asked again", async () => {
    const r = await registryDir(gzipSync, { zstdDelay: 0.3 });
    const versions = await versionsIn(r, 4);
    const pairs = versions.flatMap((a, i) => versions.filter((_, j) => j > i).map((b) => [a.digest, b.digest] as const)); // 6 pairs
    const deltas = new LayerDeltas(r.storage, { zstd: r.zstd, maxConcurrent: 2, maxQueued: 1 });
    const outcomes = await Promise.all(pairs.map(([f, t]) => deltas.get("main/app", f, t)));
    const busy = outcomes.filter((o) => "refused" in o);
    expect(busy).toHaveLength(3);
    for (const o of busy) expect(o).toEqual({ refused: "the gateway is busy making other deltas (2 at a time, 1 waiting); a later request makes this one" });
    expect(outcomes.filter((o) => "descriptor" in o)).toHaveLength(3);
    expect(await r.runs()).toBe(3);
    expect(await r.peak()).toBe(2);
    // Not remembered: asked again, each refused pair is made; made ones come from the cache, taking no slot.
    const again = await Promise.all(pairs.map(([f, t]) => deltas.get("main/app", f, t)));
    for (const o of again) expect("descriptor" in o).toBe(true);
    expect(await r.runs()).toBe(6);
    expect(await r.peak()).toBe(2);
  });

  test("a pair that waits maxWaitMs without a turn is refused as busy then, not held until one comes", async () => {
    const r = await registryDir(gzipSync, { zstdDelay: 1 });
    const versions = await versionsIn(r, 3);
    const deltas = new LayerDeltas(r.storage, { zstd: r.zstd, maxConcurrent: 1, maxQueued: 2, maxWaitMs: 200 });
    const first = deltas.get("main/app", versions[0]!.digest, versions[1]!.digest);
    while ((await r.runs()) === 0) await Bun.sleep(20); // the first holds the one slot: its zstd runs
    const t0 = performance.now();
    const waited = await deltas.get("main/app", versions[0]!.digest, versions[2]!.digest);
    expect(performance.now() - t0).toBeLessThan(900); // refused after its wait, before the first's zstd ends
    expect(waited).toEqual({ refused: "the gateway is busy making other deltas (1 at a time, 2 waiting): no turn within 0.2 s; a later request makes this one" });
    expect("descriptor" in (await first)).toBe(true);
    // The queue place it gave up is free: asked again, the pair is made.
    expect("descriptor" in (await deltas.get("main/app", versions[0]!.digest, versions[2]!.digest))).toBe(true);
  });
});
