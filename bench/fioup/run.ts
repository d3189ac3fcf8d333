/**
 * fioup benchmarks (run: `bun bench/fioup/run.ts [--mb 500]`):
 *  1. `fioup fetch` of ~500 MB of images vs `skopeo copy` of the same images
 *     from the same gateway registry into an OCI layout (time, ratio; three rounds, the order
 *     alternating, `sync` between sides, best of three each);
 *  2. peak RSS of `fioup daemon` idle and while it downloads and installs;
 *  3. publish-to-running time with 1 s polling (small app, daemon).
 * Everything runs on loopback: private dockerd, gateway, upstream docker-registry.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { benchArgs } from "../_args.ts";
import {
  Device, Publisher, freePort, httpGet, httpdCompose, httpdImage, pushImage, randomBytes, startDockerRegistry, startDockerd, startTestGateway,
} from "../../test/fioup/_setup.ts";
import { run, tempDir } from "../../test/harness/tmp.ts";
import { rssKb } from "../_proc.ts";

const { values } = benchArgs({ options: { mb: { type: "string", default: "500" } } });
const totalMb = Number(values.mb);
const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);


const dockerd = await startDockerd();
const upstream = await startDockerRegistry();
const gw = await startTestGateway();
const SMALL = "benchsmall";
const BIG = "benchbig";
const devices: Device[] = [];
try {
  const port = await freePort();
  // --- v1: a small app; a daemon device runs it ---
  const small1 = await pushImage(upstream, "bench/small", "v1", httpdImage("bench v1"));
  const pub = await Publisher.create(gw, upstream, { [`${SMALL}/docker-compose.yml`]: httpdCompose(small1, port) });
  await pub.publish(1);
  const daemonDev = await Device.create(dockerd);
  devices.push(daemonDev);
  await daemonDev.register(gw);
  const daemon = daemonDev.spawn(["daemon"]);
  void new Response(daemon.stderr).text();
  const waitBody = async (body: string, ms = 300_000) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if ((await httpGet(port)) === body) return true;
      await Bun.sleep(100);
    }
    throw new Error(`timeout waiting for ${body}`);
  };
  await waitBody("bench v1");
  await Bun.sleep(5000);
  const idle = rssKb(daemon.pid);
  log(`daemon idle: RSS ${idle.rss} kB, peak ${idle.hwm} kB`);

  // --- publish-to-running with 1 s polling ---
  const small2 = await pushImage(upstream, "bench/small", "v2", httpdImage("bench v2"));
  await pub.commit({ [`${SMALL}/docker-compose.yml`]: httpdCompose(small2, port) });
  const t0 = Date.now();
  await pub.publish(2);
  const publishMs = Date.now() - t0;
  await waitBody("bench v2");
  const publishToRunningMs = Date.now() - t0;
  log(`publish-to-running: ${publishToRunningMs} ms (publish itself ${publishMs} ms)`);

  // --- v3: + a big app (2 images x 2 random layers) ---
  const layerBytes = Math.floor((totalMb << 20) / 4);
  log(`building 2 images with 2 x ${layerBytes >> 20} MiB random layers`);
  const bigRefs: string[] = [];
  for (const i of [1, 2]) {
    bigRefs.push(
      await pushImage(upstream, `bench/big${i}`, "v1", {
        cmd: ["sleep", "3600"],
        layers: [{ "/a.bin": randomBytes(layerBytes) }, { "/b.bin": randomBytes(layerBytes) }],
      }),
    );
  }
  const bigCompose = `services:\n${bigRefs.map((r, i) => `  s${i}:\n    image: ${r}\n    stop_grace_period: 1s\n`).join("")}`;
  await pub.commit({ [`${BIG}/docker-compose.yml`]: bigCompose });
  await pub.publish(3);
  const pubTargets = await gw.admin<{ targets: Record<string, { custom: { docker_compose_apps: Record<string, { uri: string }> } }> }>("/admin/targets");

  // Daemon: sample RSS while it fetches and installs v3.
  // Peak RSS per update state, sampled every 50 ms.
  let peakRss = idle.rss;
  const peakByState: Record<string, number> = {};
  const samplerEnd = Date.now() + 600_000;
  let seenV3 = false;
  while (Date.now() < samplerEnd) {
    const rss = rssKb(daemon.pid).rss;
    peakRss = Math.max(peakRss, rss);
    const st = daemonDev.updateState();
    if (st) peakByState[st.state] = Math.max(peakByState[st.state] ?? 0, rss);
    if (st && st.state !== "completed") seenV3 = true;
    if (seenV3 && st?.state === "completed") break;
    await Bun.sleep(50);
  }
  const busy = rssKb(daemon.pid);
  log(`daemon during fetch+install of v3: sampled peak RSS ${peakRss} kB, VmHWM ${busy.hwm} kB, by state ${JSON.stringify(peakByState)}`);
  daemon.kill("SIGTERM");
  await daemon.exited;

  // --- fioup fetch vs skopeo copy, same images, same registry: three rounds, the order
  // alternating, `sync` between sides, best (fastest) of three for each side. ---
  const certDir = await tempDir("bench-certs-");
  writeFileSync(join(certDir, "ca.crt"), readFileSync(join(gw.dataDir, "pki/ca.pem")));
  let images: string[] = [];
  let fetchBytes = 0;
  const fioupSide = async () => {
    const dev = await Device.create(dockerd);
    devices.push(dev);
    await dev.register(gw);
    Bun.spawnSync(["sync"]);
    const t0 = performance.now();
    const fr = await dev.fioup("fetch");
    const ms = performance.now() - t0;
    if (fr.code !== 0) throw new Error(`fioup fetch failed: ${fr.stderr}`);
    fetchBytes = fr.json.bytesFetched;
    if (!images.length) {
      // The image refs skopeo copies: every image manifest fioup's plan resolved.
      const { Database } = await import("bun:sqlite");
      const db = new Database(join(dev.sotaDir, "fioup.db"), { readonly: true });
      const plan = JSON.parse(db.query<{ plan_json: string }, []>("SELECT plan_json FROM updates ORDER BY id DESC LIMIT 1").get()!.plan_json);
      db.close();
      images = (plan.apps as { images: string[] }[]).flatMap((a) => a.images);
    }
    log(`fioup fetch: ${fr.json.bytesFetched} bytes in ${ms.toFixed(0)} ms`);
    return ms;
  };
  const skopeoSide = async () => {
    const layout = await tempDir("bench-layout-");
    Bun.spawnSync(["sync"]);
    const t0 = performance.now();
    let i = 0;
    for (const ref of images) {
      await run(["skopeo", "copy", "--quiet", "--src-cert-dir", certDir, "--src-creds", `admin:${gw.adminToken}`, `docker://${ref}`, `oci:${layout}:img${i++}`]);
    }
    const ms = performance.now() - t0;
    log(`skopeo copy: ${images.length} images in ${ms.toFixed(0)} ms`);
    return ms;
  };
  const fetchRuns: number[] = [];
  const skopeoRuns: number[] = [];
  for (let r = 0; r < 3; r++) {
    // fioup goes first in round 1 (skopeo needs the image list it resolves), then the order alternates.
    if (r % 2 === 0) {
      fetchRuns.push(await fioupSide());
      skopeoRuns.push(await skopeoSide());
    } else {
      skopeoRuns.push(await skopeoSide());
      fetchRuns.push(await fioupSide());
    }
  }
  const fetchMs = Math.min(...fetchRuns);
  const skopeoMs = Math.min(...skopeoRuns);
  const fr = { json: { bytesFetched: fetchBytes } };

  const result = {
    imagesMb: totalMb,
    fioupFetch: { ms: Math.round(fetchMs), bytes: fr.json.bytesFetched },
    skopeoCopy: { ms: Math.round(skopeoMs), images: images.length },
    rounds: { fioupMs: fetchRuns.map(Math.round), skopeoMs: skopeoRuns.map(Math.round) },
    fetchOverSkopeo: Number((fetchMs / skopeoMs).toFixed(2)),
    daemonRssKb: { idle: idle.rss, idlePeak: idle.hwm, updatingSampledPeak: peakRss, peakHwm: busy.hwm, peakByState },
    publishToRunningMs,
    publishMs,
  };
  process.stdout.write(JSON.stringify(result, null, 2) + "\n");
} finally {
  for (const d of devices) await d.cleanup([SMALL, BIG]).catch(() => {});
  await gw.stop();
  await upstream.stop();
  await dockerd.stop();
}
