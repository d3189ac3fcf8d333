/**
 * Publish → new content served, for a target of five apps where one changed by one file
 * (its bind-mounted page), the changed app ignoring SIGTERM with a 1 s stop_grace_period;
 * `fioup daemon` polling every second. Prints the time of each step (from the daemon's
 * progress lines as they arrive), and beside it the floor: `docker-compose up -d` of the
 * changed app alone, recreating its container, in the same run. Goal: under 5 s.
 *
 * Run: `bun bench/fioup/five-apps.ts [--runs 3]`. Loopback only: private dockerd,
 * gateway, upstream docker-registry.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { benchArgs } from "../_args.ts";
import { Device, Publisher, freePort, httpGet, httpdImage, pushImage, startDockerRegistry, startDockerd, startTestGateway } from "../../test/fioup/_setup.ts";
import { run, tempDir } from "../../test/harness/tmp.ts";

const { values } = benchArgs({ options: { runs: { type: "string", default: "3" } } });
const runs = Number(values.runs);
const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);
const APPS = ["benchweb1", "benchweb2", "benchweb3", "benchweb4", "benchweb5"];
const CHANGED = APPS[0]!;

const compose = (image: string, port: number) => `services:
  web:
    image: ${image}
    stop_grace_period: 1s
    ports:
      - "127.0.0.1:${port}:80"
    volumes:
      - ./www:/www:ro
`;

async function waitBody(port: number, body: string, ms = 120_000): Promise<number> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if ((await httpGet(port)) === body) return Date.now();
    await Bun.sleep(25);
  }
  throw new Error(`timeout waiting for "${body}" on ${port}`);
}

const dockerd = await startDockerd();
const upstream = await startDockerRegistry();
const gw = await startTestGateway();
const device = await Device.create(dockerd);
const floorDir = await tempDir("bench-floor-");
let daemon: ReturnType<Device["spawn"]> | undefined;
try {
  // busybox httpd as PID 1 ignores SIGTERM: with no STOPSIGNAL in the image, a stop waits out the grace period.
  const image = await pushImage(upstream, "bench/five", "v1", { ...httpdImage("baked"), stopSignal: null });
  const ports = await Promise.all(APPS.map(() => freePort()));
  const files: Record<string, string> = {};
  APPS.forEach((a, i) => {
    files[`${a}/docker-compose.yml`] = compose(image, ports[i]!);
    files[`${a}/www/index.html`] = `${a} v1`;
  });
  const pub = await Publisher.create(gw, upstream, files);
  await pub.publish(1);
  await device.register(gw);
  daemon = device.spawn(["daemon"]);
  const lines: { at: number; line: string }[] = [];
  void (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of daemon!.stderr as ReadableStream<Uint8Array>) {
      buf += dec.decode(chunk);
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        lines.push({ at: Date.now(), line: buf.slice(0, i) });
        buf = buf.slice(i + 1);
      }
    }
  })();
  for (let i = 0; i < APPS.length; i++) await waitBody(ports[i]!, `${APPS[i]} v1`, 300_000);
  await Bun.sleep(2000);

  // The floor: the changed app alone with plain docker-compose (a second copy on another port).
  const floorPort = await freePort();
  mkdirSync(join(floorDir, "www"), { recursive: true });
  writeFileSync(join(floorDir, "www/index.html"), "floor");
  writeFileSync(join(floorDir, "docker-compose.yml"), compose(image, floorPort));
  const composeEnv = { ...process.env, ...dockerd.env } as Record<string, string>;
  await run(["docker-compose", "-p", "benchfloor", "up", "-d"], { cwd: floorDir, env: composeEnv });

  const results: { total: number; publish: number; steps: Record<string, number>; floor: number }[] = [];
  for (let n = 2; n < 2 + runs; n++) {
    const body = `${CHANGED} v${n}`;
    await pub.commit({ [`${CHANGED}/www/index.html`]: body });
    const from = lines.length;
    const t0 = Date.now();
    await pub.publish(n);
    const published = Date.now();
    const served = await waitBody(ports[0]!, body);
    // Steps: the daemon prints "<time> <step> <target> (...)" as each step begins.
    const mine = lines.slice(from).filter((l) => l.line.includes(`amd64-linux-${n}`));
    const steps: Record<string, number> = { publish: published - t0 };
    let prev = { name: "detect", at: published };
    for (const l of mine) {
      const m = /\]\s+(\w+) amd64-linux-/.exec(l.line) ?? /^\S+\s+(\w+) amd64-linux-/.exec(l.line);
      if (!m) continue;
      steps[prev.name] = l.at - prev.at;
      prev = { name: m[1]!, at: l.at };
    }
    steps[`${prev.name} (until served)`] = served - prev.at;
    // The floor, in the same run: recreate the one app with docker-compose up -d.
    writeFileSync(join(floorDir, "www/index.html"), `floor v${n}`);
    const f0 = Date.now();
    await run(["docker-compose", "-p", "benchfloor", "up", "-d", "--force-recreate"], { cwd: floorDir, env: composeEnv });
    await waitBody(floorPort, `floor v${n}`);
    const floor = Date.now() - f0;
    results.push({ total: served - t0, publish: published - t0, steps, floor });
    log(`run ${n - 1}: publish → served ${served - t0} ms (publish ${published - t0} ms, after publish ${served - published} ms); floor ${floor} ms`);
    log(`  steps (ms): ${Object.entries(steps).map(([k, v]) => `${k} ${v}`).join(", ")}`);
    await Bun.sleep(3000); // let the daemon complete (prune) before the next round
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const summary = {
    runs,
    medianPublishToServedMs: med(results.map((r) => r.total)),
    medianAfterPublishMs: med(results.map((r) => r.total - r.publish)),
    medianFloorMs: med(results.map((r) => r.floor)),
    goalMs: 5000,
    results,
  };
  console.log(JSON.stringify(summary, null, 2));
} finally {
  daemon?.kill("SIGTERM");
  await daemon?.exited;
  await run(["docker-compose", "-p", "benchfloor", "down"], { cwd: floorDir, env: { ...process.env, ...dockerd.env } as Record<string, string>, allowFail: true });
  await device.cleanup(APPS).catch(() => {});
  await gw.stop();
  await upstream.stop();
  await dockerd.stop();
}
