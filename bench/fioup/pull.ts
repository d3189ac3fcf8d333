/**
 * lib/oci pull speed against curl doing the same work (`bun bench/fioup/pull.ts [--mb 100,1000]`).
 *
 * The embedded registry (bench/registry/serve.ts, its own process, plain HTTP on loopback)
 * serves an image with one random layer of each size. lib/oci against three curl pipelines, three rounds, the order
 * alternating, `sync` before each side, best (fastest) of three:
 *  - lib/oci: `copyRegistryToLayout` into a fresh OCI layout, i.e. `BlobStore.pull`: digest
 *    checked on the fly, the blob fsynced before it is renamed into the store;
 *  - curl: `curl -o FILE` then `sha256sum FILE` then `sync` (download, check, make durable),
 *    the single-pass variant `curl | tee >(sha256sum) > FILE; sync`, and `openssl dgst -sha256`
 *    in place of sha256sum (coreutils' sha256sum does not use the CPU's SHA instructions; OpenSSL
 *    and Bun do). Ratios: lib/oci's speed over the faster sha256sum peer, and over the openssl one.
 * Prints one line per side and size, then a JSON summary on stdout.
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { benchArgs } from "../_args.ts";
import { randomFile, startEmbeddedRegistry } from "../registry/_embedded.ts";
import { RegistryClient, copyRegistryToLayout } from "../../lib/oci/index.ts";
import { run, stopPid, tempDir } from "../../test/harness/tmp.ts";

const { values } = benchArgs({ options: { mb: { type: "string", default: "100,1000" }, runs: { type: "string", default: "3" } } });
const MB = 1_000_000;
const sizes = values.mb.split(",").map((s) => Number(s) * MB);
const runs = Number(values.runs);
const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);

const dir = await tempDir("bench-pull-");
const server = await startEmbeddedRegistry(join(dir, "registry"));
try {
  const { url } = server;
  const client = new RegistryClient({ registry: url.replace("http://", ""), scheme: "http" });
  const results: Record<string, unknown>[] = [];
  for (const size of sizes) {
    const label = `${size / MB} MB`;
    const repo = `bench/pull${size / MB}`;
    const src = join(dir, "layer.bin");
    const digest = await randomFile(src, size);
    await client.pushBlob(repo, { path: src }, { digest, size });
    await rm(src);
    const cfg = new TextEncoder().encode(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } }));
    const cfgDesc = await client.pushBlob(repo, cfg);
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...cfgDesc },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest, size }],
    });
    await client.putManifest(repo, "latest", new TextEncoder().encode(manifest), "application/vnd.oci.image.manifest.v1+json");
    const blobUrl = `${url}/v2/${repo}/blobs/${digest}`;

    const out = join(dir, "out");
    const lib = async () => {
      await rm(out, { recursive: true, force: true });
      await run(["sync"]);
      const t0 = performance.now();
      const r = await copyRegistryToLayout(client, repo, "latest", out);
      const s = (performance.now() - t0) / 1000;
      if (r.fetched < size) throw new Error(`lib/oci fetched ${r.fetched} bytes, expected at least ${size}`);
      return s;
    };
    const shell = async (script: string) => {
      await rm(out, { recursive: true, force: true });
      await run(["sync"]);
      const t0 = performance.now();
      const { stdout } = await run(["bash", "-c", script, "bench", blobUrl, out]);
      const s = (performance.now() - t0) / 1000;
      if (!stdout.includes(digest.slice(7))) throw new Error(`curl side: got ${stdout.trim()}, expected ${digest}`);
      return s;
    };
    const curlThenSum = () => shell('curl -sf -o "$2" "$1" && sha256sum "$2" && sync');
    const curlOpenssl = () => shell('curl -sf -o "$2" "$1" && openssl dgst -sha256 "$2" && sync');
    const curlTeeSum = () => shell('set -o pipefail; curl -sf "$1" | tee >(sha256sum) > "$2" && sync');
    const t = { lib: [] as number[], curl: [] as number[], tee: [] as number[], openssl: [] as number[] };
    const sides = { lib, curl: curlThenSum, tee: curlTeeSum, openssl: curlOpenssl };
    for (let r = 0; r < runs; r++) {
      // Alternate which side goes first.
      const order = (["lib", "curl", "tee", "openssl"] as const).slice();
      if (r % 2 === 1) order.reverse();
      for (const side of order) t[side].push(await sides[side]());
    }
    await rm(out, { recursive: true, force: true });
    const best = (xs: number[]) => Math.min(...xs);
    const mbps = (s: number) => size / MB / s;
    const sec = (xs: number[]) => xs.map((x) => Number(x.toFixed(2)));
    const peers = { curlSha256sum: best(t.curl), curlTeeSha256sum: best(t.tee), curlOpenssl: best(t.openssl) };
    const row = {
      size: label,
      mbps: {
        libOci: Math.round(mbps(best(t.lib))),
        curlSha256sum: Math.round(mbps(peers.curlSha256sum)),
        curlTeeSha256sum: Math.round(mbps(peers.curlTeeSha256sum)),
        curlOpenssl: Math.round(mbps(peers.curlOpenssl)),
      },
      seconds: { libOci: sec(t.lib), curlSha256sum: sec(t.curl), curlTeeSha256sum: sec(t.tee), curlOpenssl: sec(t.openssl) },
      // Speed of lib/oci over the peer's: >= 0.8 is the goal.
      ratioVsSha256sum: Number((Math.min(peers.curlSha256sum, peers.curlTeeSha256sum) / best(t.lib)).toFixed(2)),
      ratioVsOpenssl: Number((peers.curlOpenssl / best(t.lib)).toFixed(2)),
    };
    log(
      `${label}: lib/oci ${row.mbps.libOci} MB/s | curl -o, sha256sum, sync ${row.mbps.curlSha256sum} | curl | tee >(sha256sum), sync ${row.mbps.curlTeeSha256sum} | ` +
        `curl -o, openssl dgst, sync ${row.mbps.curlOpenssl} MB/s | lib/oci: ${row.ratioVsSha256sum}x sha256sum peer, ${row.ratioVsOpenssl}x openssl peer`,
    );
    results.push(row);
  }
  const load = (await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ");
  process.stdout.write(`${JSON.stringify({ bench: "fioup/pull", runs, load, results }, null, 2)}\n`);
} finally {
  await stopPid(server.pid);
  await rm(dir, { recursive: true, force: true });
}
