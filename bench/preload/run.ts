/**
 * preload benchmark (run: `bun bench/preload/run.ts [--mb 150] [--rounds 3]`):
 *  1. `preload` of an image with three apps (one image each: busybox + two
 *     random layers, --mb in total) from a real gateway, cold cache, vs
 *     `skopeo copy` of the same three images from the same gateway registry
 *     into an OCI layout (time, ratio; rounds alternate which goes first, `sync` between
 *     sides, best of --rounds (default 3) each);
 *  2. a second preload with the warm cache: bytes fetched (goal 0) and time;
 *  3. the same warm preload written as ext4.
 * Everything runs on loopback: gateway, upstream docker-registry. Result JSON on stdout.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { benchArgs } from "../_args.ts";
import { parse as parseYaml } from "yaml";
import { Publisher, httpdCompose, pushImage, randomBytes, startDockerRegistry } from "../../test/fioup/_setup.ts";
import { run, tempDir } from "../../test/harness/tmp.ts";
import { asTestGateway, factoryConfig, preload, preloadConfig, startTestGateway } from "../../test/preload/_setup.ts";

const { values } = benchArgs({ options: { mb: { type: "string", default: "150" }, rounds: { type: "string", default: "3" } } });
const totalMb = Number(values.mb);
const rounds = Math.max(1, Number(values.rounds));
const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);
const APPS = ["benchpa", "benchpb", "benchpc"];

const upstream = await startDockerRegistry();
const gw = await startTestGateway();
try {
  const layerBytes = Math.floor((totalMb << 20) / (APPS.length * 2));
  log(`pushing ${APPS.length} images with 2 x ${(layerBytes / 2 ** 20).toFixed(1)} MiB random layers`);
  const refs: string[] = [];
  for (const app of APPS) {
    refs.push(
      await pushImage(upstream, `bench/${app}`, "v1", {
        cmd: ["httpd", "-f", "-p", "80", "-h", "/www"],
        layers: [{ "/www/a.bin": randomBytes(layerBytes) }, { "/www/b.bin": randomBytes(layerBytes) }],
      }),
    );
  }
  const pub = await Publisher.create(
    asTestGateway(gw),
    upstream,
    Object.fromEntries(APPS.map((a, i) => [`${a}/docker-compose.yml`, httpdCompose(refs[i]!, 20000 + i)])),
  );
  await pub.publish(1);
  const fc = await factoryConfig(preloadConfig(APPS.join(",")));
  const work = await tempDir("bench-preload-");
  const args = ["--factory-config", fc, "--ref", "refs/heads/master", "--server", gw.url, "--token", gw.adminToken, "--hwid", "amd64-linux", "--json"];

  const timed = async <T>(f: () => Promise<T>): Promise<[T, number]> => {
    const t0 = performance.now();
    const r = await f();
    return [r, performance.now() - t0];
  };
  const preloadOnce = async (cache: string, out: string, format = "dir") => {
    const [r, ms] = await timed(() => preload([...args, "--cache", cache, "--out", out, "--format", format]));
    if (r.code !== 0) throw new Error(`preload failed (${r.code}): ${r.stderr}`);
    return { ms, fetched: r.json.fetched as number, bytes: r.json.bytes as number, blobs: r.json.blobs as number };
  };

  // The pinned image references the gateway serves, read from the first image's bundles.
  let images: string[] = [];
  const imagesOf = async (tree: string) => {
    const store = join(tree, "var/sota/reset-apps/blobs/sha256");
    const target = JSON.parse(readFileSync(join(tree, "var/sota/preload/target.json"), "utf8"));
    const out: string[] = [];
    for (const app of APPS) {
      const manifest = JSON.parse(readFileSync(join(store, target.entry.custom.docker_compose_apps[app].uri.split("@sha256:")[1]), "utf8"));
      const bundle = join(store, manifest.layers[0].digest.slice(7));
      const compose = parseYaml((await run(["tar", "-xzOf", bundle, "docker-compose.yml"])).stdout);
      for (const svc of Object.values(compose.services) as { image: string }[]) out.push(svc.image);
    }
    return out;
  };
  const certDir = await tempDir("bench-certs-");
  writeFileSync(join(certDir, "ca.crt"), gw.caPem);
  const skopeoOnce = async () => {
    const layout = await tempDir("bench-layout-");
    const [, ms] = await timed(async () => {
      for (const [i, ref] of images.entries()) {
        await run(["skopeo", "copy", "--quiet", "--src-cert-dir", certDir, "--src-creds", `admin:${gw.adminToken}`, `docker://${ref}`, `oci:${layout}:img${i}`]);
      }
    });
    return ms;
  };

  const cold: Awaited<ReturnType<typeof preloadOnce>>[] = [];
  const skopeo: number[] = [];
  let warmCache = "";
  const preloadSide = async (i: number) => {
    warmCache = join(work, `cache-${i}`);
    Bun.spawnSync(["sync"]);
    const c = await preloadOnce(warmCache, join(work, `cold-${i}`));
    cold.push(c);
    log(`preload, cold cache: ${c.blobs} blobs, ${c.bytes} bytes, ${c.fetched} fetched, ${c.ms.toFixed(0)} ms`);
    if (!images.length) images = await imagesOf(join(work, `cold-${i}`));
  };
  const skopeoSide = async () => {
    Bun.spawnSync(["sync"]);
    skopeo.push(await skopeoOnce());
    log(`skopeo copy of ${images.length} images: ${skopeo.at(-1)!.toFixed(0)} ms`);
  };
  // Preload first in round 1 (skopeo copies the images it resolved), then the order alternates;
  // `sync` before each side; the best (fastest) round of each side counts.
  for (let i = 0; i < rounds; i++) {
    if (i % 2 === 0) {
      await preloadSide(i);
      await skopeoSide();
    } else {
      await skopeoSide();
      await preloadSide(i);
    }
  }
  const warm = await preloadOnce(warmCache, join(work, "warm"));
  log(`preload, warm cache: ${warm.fetched} bytes fetched, ${warm.ms.toFixed(0)} ms`);
  const ext4 = await preloadOnce(warmCache, join(work, "warm.ext4"), "ext4");
  log(`preload, warm cache, ext4: ${ext4.fetched} bytes fetched, ${ext4.ms.toFixed(0)} ms`);

  const coldMs = Math.min(...cold.map((c) => c.ms));
  const skopeoMs = Math.min(...skopeo);
  const result = {
    imagesMb: totalMb,
    apps: APPS.length,
    imageBytes: cold[0]!.bytes,
    preloadCold: { ms: Math.round(coldMs), runsMs: cold.map((c) => Math.round(c.ms)), fetched: cold[0]!.fetched },
    skopeoCopy: { ms: Math.round(skopeoMs), runsMs: skopeo.map(Math.round), images: images.length },
    preloadOverSkopeo: Number((coldMs / skopeoMs).toFixed(2)),
    preloadWarm: { ms: Math.round(warm.ms), fetched: warm.fetched },
    preloadWarmExt4: { ms: Math.round(ext4.ms), fetched: ext4.fetched },
  };
  console.log(JSON.stringify(result, null, 2));
} finally {
  await Promise.all([gw.stop(), upstream.stop()]);
}
