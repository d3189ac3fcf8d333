/**
 * Benchmark: bytes on the wire for a layer update, three realistic changes on real files:
 *
 * - one file: ~100 MB of shared libraries (/usr/lib/x86_64-linux-gnu), one ~1 MB file replaced;
 * - dependency bump: the chromium + chromium-common packages 155 -> 156, unpacked (an app that
 *   ships a browser, or any large dependency taking a new upstream release);
 * - base image patch update: ~100 MB of unpacked Debian packages, five of which take their
 *   Debian security/point release (nginx, nginx-common, nginx-light, libgpgme11, rsync).
 *
 * For each: the full gzip layer (what Foundries, Kanto and Torizon send), our delta (the
 * gateway's own LayerDeltas: zstd --patch-from over the uncompressed tars), and the peer in
 * the same run: `rsync --stats` from the new unpacked tree onto a copy of the old one (roughly
 * what balena's deltas cost), plain and with -z. Also the alternative method docs/deltas.md
 * compares: rsync's block matching over the tars (`--only-write-batch`, then zstd-compressed),
 * which is what a chunk-index scheme would send at best. Device side: the time to rebuild the layer in-process (lib/oci/delta.ts,
 * hash check included) against the time to download the full layer at 10 MB/s.
 *
 * Goals: our delta within 1.5x of rsync's bytes; >= 10x fewer bytes than the full layer for
 * the one-file change; rebuild <= 2x the 10 MB/s download time.
 *
 *   bun bench/delta/run.ts [--only one-file,dependency-bump,base-patch]
 */
import { cpSync, readdirSync, writeFileSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { LayerDeltas } from "../../gateway/registry/deltas.ts";
import { OCI_MANIFEST } from "../../gateway/registry/manifest.ts";
import { RegistryStorage } from "../../gateway/registry/storage.ts";
import { applyLayerDelta } from "../../lib/oci/delta.ts";
import { digestFile } from "../../lib/oci/digest.ts";
import { run, tempDir } from "../../test/harness/tmp.ts";
import { fileNear, realFilePaths, REAL_FILES_ROOT } from "../../test/deltas/_real-files.ts";
import { benchArgs } from "../_args.ts";
import { randomBytes } from "../../test/fioup/_setup.ts";

const { values } = benchArgs({ options: { only: { type: "string" } } });

const APT = "/var/cache/apt/archives";
const MB = 1e6;
const only = values.only === undefined ? undefined : new Set(values.only.split(","));

/** Unpacks .deb files into `dir` (what a Dockerfile's apt-get install leaves in a layer). */
async function unpackDebs(debs: string[], dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const d of debs) await run(["dpkg-deb", "-x", join(APT, d), dir]);
}

const debNamed = (pkg: string, version: RegExp) => {
  const hit = readdirSync(APT).find((f) => f.startsWith(`${pkg}_`) && version.test(f));
  if (!hit) throw new Error(`no ${pkg} matching ${version} in ${APT}`);
  return hit;
};

/** Each scenario writes the old and new unpacked trees. */
const scenarios: Record<string, (a: string, b: string) => Promise<void>> = {
  async "one-file"(a, b) {
    const paths = realFilePaths(100_000_000);
    for (const p of paths) cpSync(join(REAL_FILES_ROOT, p), join(a, p), { preserveTimestamps: true });
    cpSync(a, b, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
    writeFileSync(join(b, fileNear(paths, 1 << 20)), randomBytes(1 << 20));
  },
  async "dependency-bump"(a, b) {
    await unpackDebs([debNamed("chromium", /_155\./), debNamed("chromium-common", /_155\./)], a);
    await unpackDebs([debNamed("chromium", /_156\./), debNamed("chromium-common", /_156\./)], b);
  },
  async "base-patch"(a, b) {
    const bumped: [string, RegExp, RegExp][] = [
      ["nginx", /deb12u10/, /deb12u11/],
      ["nginx-common", /deb12u10/, /deb12u11/],
      ["nginx-light", /deb12u10/, /deb12u11/],
      ["libgpgme11", /\+b1_/, /deb12u1_/],
      ["rsync", /_3\.2\.7/, /_3\.5\.0/],
    ];
    const skip = new Set(["chromium", "chromium-common", ...bumped.map(([p]) => p)]);
    const base: string[] = [];
    let bytes = 0;
    for (const f of readdirSync(APT).filter((x) => x.endsWith(".deb")).sort()) {
      if (skip.has(f.split("_")[0]!)) continue;
      base.push(f);
      bytes += Bun.file(join(APT, f)).size;
      if (bytes > 30 * MB) break;
    }
    await unpackDebs([...base, ...bumped.map(([p, old]) => debNamed(p, old))], a);
    await unpackDebs([...base, ...bumped.map(([p, , next]) => debNamed(p, next))], b);
  },
};

/** A reproducible layer tar of a tree (sorted, fixed owner and mtime, like a build with SOURCE_DATE_EPOCH). */
async function tarOf(dir: string, out: string): Promise<void> {
  await run(["tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "-cf", out, "-C", dir, "."]);
}

const size = (p: string) => Bun.file(p).size;
const timed = async <T>(f: () => Promise<T>): Promise<[T, number]> => {
  const t = performance.now();
  const r = await f();
  return [r, (performance.now() - t) / 1000];
};

/** rsync's own count of bytes sent plus received for new tree -> copy of old tree. */
async function rsyncBytes(src: string, old: string, work: string, extra: string[]): Promise<number> {
  const dst = join(work, "rsync-dst");
  await rm(dst, { recursive: true, force: true });
  cpSync(old, dst, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
  const { stdout: out } = await run(["rsync", "-a", "--stats", ...extra, `${src}/`, `${dst}/`]);
  const num = (label: string) => Number(new RegExp(`${label}: ([\\d,]+)`).exec(out)![1]!.replaceAll(",", ""));
  await rm(dst, { recursive: true, force: true });
  return num("Total bytes sent") + num("Total bytes received");
}

interface Row {
  scenario: string;
  tarA: number;
  tarB: number;
  full: number;
  delta: number;
  deltaSec: number;
  rsync: number;
  rsyncZ: number;
  rsyncBatchZst: number;
  rebuildSec: number;
  downloadSec: number;
}

const rows: Row[] = [];
for (const [name, make] of Object.entries(scenarios)) {
  if (only && !only.has(name)) continue;
  const work = await tempDir(`bench-delta-${name}-`);
  try {
    process.stderr.write(`${name}: preparing trees...\n`);
    const a = join(work, "a");
    const b = join(work, "b");
    await make(a, b);
    await tarOf(a, join(work, "a.tar"));
    await tarOf(b, join(work, "b.tar"));
    // Layers as publish stores them (gzip -6), each the layer of an image manifest (the gateway
    // makes deltas only between layers of a repository's images), in a registry directory the
    // gateway's code reads.
    const storage = new RegistryStorage(join(work, "registry"));
    const blob = async (path: string) => {
      const { digest, size } = await digestFile(path);
      await storage.commitBlobFile(path, digest);
      await storage.linkBlob("bench/app", digest);
      return { digest, size };
    };
    const configFile = join(work, "config.json");
    writeFileSync(configFile, JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } }));
    const config = { mediaType: "application/vnd.oci.image.config.v1+json", ...(await blob(configFile)) };
    const layer = async (tar: string, tag: string) => {
      const gz = `${tar}.gz`;
      await run(["sh", "-c", `gzip -6 -n -c '${tar}' > '${gz}'`]);
      const { digest, size } = await blob(gz);
      const manifest = { schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest, size }] };
      await storage.putManifest("bench/app", tag, new TextEncoder().encode(JSON.stringify(manifest)), OCI_MANIFEST);
      return digest;
    };
    const from = await layer(join(work, "a.tar"), "a");
    const to = await layer(join(work, "b.tar"), "b");
    process.stderr.write(`${name}: our delta (gateway LayerDeltas)...\n`);
    const [outcome, deltaSec] = await timed(() => new LayerDeltas(storage, { maxRatio: 1 }).get("bench/app", from, to));
    if (!("descriptor" in outcome)) throw new Error(`${name}: no delta: ${outcome.refused}`);
    const d = outcome.descriptor;
    const diffId = (await digestFile(join(work, "b.tar"))).digest;
    const [, rebuildSec] = await timed(() =>
      applyLayerDelta({ base: Bun.file(storage.blobPath(from)), baseSize: d.fromSize, delta: Bun.file(storage.blobPath(d.digest)), diffId, out: join(work, "rebuilt.tar") }),
    );
    await rm(join(work, "rebuilt.tar"), { force: true });
    process.stderr.write(`${name}: rsync (peer) and the alternatives...\n`);
    const rsync = await rsyncBytes(b, a, work, []);
    const rsyncZ = await rsyncBytes(b, a, work, ["-z"]);
    cpSync(join(work, "a.tar"), join(work, "a-copy.tar"));
    await run(["rsync", "--no-whole-file", `--only-write-batch=${join(work, "batch")}`, join(work, "b.tar"), join(work, "a-copy.tar")]);
    await run(["zstd", "-q", "-f", "-3", join(work, "batch"), "-o", join(work, "batch.zst")]);
    const full = size(storage.blobPath(to));
    rows.push({
      scenario: name,
      tarA: size(join(work, "a.tar")),
      tarB: size(join(work, "b.tar")),
      full,
      delta: d.size,
      deltaSec,
      rsync,
      rsyncZ,
      rsyncBatchZst: size(join(work, "batch.zst")),
      rebuildSec,
      downloadSec: full / (10 * MB),
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

const mb = (n: number) => (n / MB).toFixed(2);
const lines = [
  "| change | layer tar old → new (MB) | full layer gzip (MB) | our delta (MB) | rsync --stats (MB) | rsync -z --stats (MB) | delta / rsync -z | full / delta | served (budget: 3/4 of the layer) | delta made in (s) | rebuild on device (s) | full download at 10 MB/s (s) | rsync batch on tars + zstd (MB) |",
  "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ...rows.map(
    (r) =>
      `| ${r.scenario} | ${mb(r.tarA)} → ${mb(r.tarB)} | ${mb(r.full)} | ${mb(r.delta)} | ${mb(r.rsync)} | ${mb(r.rsyncZ)} | ${(r.delta / r.rsyncZ).toFixed(2)}x | ${(r.full / r.delta).toFixed(1)}x | ${r.delta <= r.full * 0.75 ? "yes" : "no: full layer"} | ${r.deltaSec.toFixed(1)} | ${r.rebuildSec.toFixed(2)} | ${r.downloadSec.toFixed(1)} | ${mb(r.rsyncBatchZst)} |`,
  ),
];
console.log(lines.join("\n"));
const oneFile = rows.find((r) => r.scenario === "one-file");
const goals = [
  ...rows.map((r) => `${r.scenario}: delta ${(r.delta / Math.min(r.rsync, r.rsyncZ)).toFixed(2)}x rsync's bytes (goal <= 1.5x) ${r.delta <= 1.5 * Math.min(r.rsync, r.rsyncZ) ? "met" : "NOT met"}; rebuild ${(r.rebuildSec / r.downloadSec).toFixed(2)}x the 10 MB/s download (goal <= 2x) ${r.rebuildSec <= 2 * r.downloadSec ? "met" : "NOT met"}`),
  ...(oneFile ? [`one-file: ${(oneFile.full / oneFile.delta).toFixed(1)}x fewer bytes than the full layer (goal >= 10x) ${oneFile.full >= 10 * oneFile.delta ? "met" : "NOT met"}`] : []),
];
console.log(`\n${goals.join("\n")}`);
