/**
 * Benchmark: what it costs a device to take a delta base from its Docker Engine instead of its
 * blob store (fioup/update/_engine-layer.ts). An image with one layer of ~SIZE MB of real files
 * (shared libraries, as bench/delta/run.ts) is loaded into the harness's private dockerd; then
 * the layer is exported (`GET /images/<id>/get` to a scratch file, layer taken from the archive,
 * hashed against its diff_id), best of three, against the time to download the layer's gzip
 * blob at 10 MB/s.
 *
 *   bun bench/delta/engine-base.ts [--mb 100]
 */
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { exportEngineLayer } from "../../fioup/update/_engine-layer.ts";
import { DockerEngine } from "../../fioup/runtime/docker-engine.ts";
import { startDockerd } from "../../test/harness/dockerd.ts";
import { buildBusyboxImage, dockerSaveTar } from "../../test/harness/images.ts";
import { tempDir } from "../../test/harness/tmp.ts";
import { realFilePaths, realFiles, realFilesImage } from "../../test/deltas/_real-files.ts";
import { benchArgs } from "../_args.ts";

const { values } = benchArgs({ options: { mb: { type: "string", default: "100" } } });
const MB = 1e6;
const size = Number(values.mb) * MB;

const work = await tempDir("bench-engine-base-");
const dockerd = await startDockerd();
try {
  process.stderr.write(`building an image with a ${size / MB} MB layer of real files...\n`);
  const img = await buildBusyboxImage({ ...realFilesImage(realFiles(realFilePaths(size)), "v1"), tag: `bench/engine-base:${process.pid}` });
  const tar = join(work, "image.tar");
  writeFileSync(tar, await dockerSaveTar(img));
  await dockerd.docker("load", "-i", tar);
  rmSync(tar);
  const engine = new DockerEngine(dockerd.host);
  const index = img.layers.length - 1;
  const layer = img.layers[index]!;
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    const got = await exportEngineLayer(engine, img.configDigest, index, layer.diffId, join(work, "export.save"));
    times.push((performance.now() - t0) / 1000);
    if (got.size !== layer.tar.byteLength) throw new Error(`exported ${got.size} bytes, expected ${layer.tar.byteLength}`);
    await got.remove();
  }
  const best = Math.min(...times);
  const imageBytes = img.layers.reduce((n, l) => n + l.tar.byteLength, 0);
  const download = layer.gz.byteLength / (10 * MB);
  console.log(`| layer tar (MB) | image unpacked (MB) | layer gzip (MB) | export + diff_id check, best of 3 (s) | runs (s) | full layer at 10 MB/s (s) |`);
  console.log(`|---|---|---|---|---|---|`);
  console.log(`| ${(layer.tar.byteLength / MB).toFixed(1)} | ${(imageBytes / MB).toFixed(1)} | ${(layer.gz.byteLength / MB).toFixed(1)} | ${best.toFixed(2)} | ${times.map((t) => t.toFixed(2)).join(", ")} | ${download.toFixed(1)} |`);
  await dockerd.docker("rmi", img.configDigest).catch(() => undefined);
} finally {
  await dockerd.stop();
  rmSync(work, { recursive: true, force: true });
}
