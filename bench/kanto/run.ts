/**
 * Kanto agent benchmark (run: `bun bench/kanto/run.ts [--components 10] [--kb 2048] [--trials 3]`):
 * time from "apply these containers" to all of them running, for N components, when the
 * images are already local and when they must be pulled, for three ways of applying the
 * same containers on the same dockerd:
 *  - ours: a desired state published over MQTT to `fioup agent` (until its COMPLETED feedback);
 *  - the compose-app flow: the same services as one compose app published by `gateway publish`,
 *    applied by `fioup update`;
 *  - `docker-compose up -d` of the same services.
 * Sides alternate order each trial, `sync` runs between sides, best of the trials is kept.
 * Also: fioup agent's RSS idle and during the applies. Goal: ours within 1.2x of docker-compose.
 * Everything runs on loopback (private dockerd, mosquitto, docker-registry, gateway).
 */
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { benchArgs } from "../_args.ts";
import { Device, Publisher, pushImageDetailed, randomBytes, startTestGateway } from "../../test/fioup/_setup.ts";
import { run, tempDir } from "../../test/harness/tmp.ts";
import { component, KantoRig } from "../../test/kanto/_rig.ts";
import { rssKb } from "../_proc.ts";

const { values } = benchArgs({
  options: { components: { type: "string", default: "10" }, kb: { type: "string", default: "2048" }, trials: { type: "string", default: "3" } },
});
const N = Number(values.components);
const KB = Number(values.kb);
const TRIALS = Number(values.trials);
const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);


const rig = await KantoRig.start("bench");
const gw = await startTestGateway();
const dockerd = rig.dockerd;
const docker = (...args: string[]) => dockerd.docker(...args);
const PROJECT = `kb${process.pid}`;
const APP = `kbapp${process.pid}`;
let device: Device | undefined;
try {
  // --- N images, each a busybox base plus its own incompressible layer ---
  log(`pushing ${N} images with ${KB} KiB layers`);
  const images: string[] = [];
  const configDigests: string[] = [];
  for (let i = 0; i < N; i++) {
    const r = await pushImageDetailed(rig.registry, `bench/kanto-${i}`, "v1", { cmd: ["sleep", "1000000"], layers: [{ "/data.bin": randomBytes(KB << 10) }] });
    images.push(r.ref);
    configDigests.push(r.image.configDigest);
  }
  const composeFor = (trial: string) =>
    `services:\n${images.map((img, i) => `  s${i}:\n    image: ${img}\n    environment:\n      TRIAL: "${trial}"\n    stop_grace_period: 1s\n`).join("")}`;

  // --- ours ---
  const agent = await rig.startAgent();
  await Bun.sleep(2000);
  const idle = rssKb(agent.pid);
  log(`fioup agent idle: RSS ${idle.rss} kB`);
  let applyPeak = 0;
  const desired = (trial: string) => images.map((img, i) => component(rig.name(`c${i}`), img, [{ key: "env", value: `TRIAL=${trial}` }]));

  // --- the compose-app flow: one app with the same services, a registered device ---
  const pub = await Publisher.create(gw, rig.registry, { [`${APP}/docker-compose.yml`]: composeFor("0") });
  await pub.publish(1);
  device = await Device.create(dockerd);
  await device.register(gw);
  let version = 1;

  // --- docker-compose ---
  const composeDir = await tempDir("kanto-bench-compose-");
  const composeEnv = { ...process.env, ...dockerd.env };
  const dockerCompose = async (...args: string[]) => {
    const p = Bun.spawn(["docker-compose", "-p", PROJECT, ...args], { cwd: composeDir, env: composeEnv, stdout: "pipe", stderr: "pipe" });
    const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
    if (code !== 0) throw new Error(`docker-compose ${args.join(" ")} failed: ${err.slice(-2000)}`);
  };

  /** Removes every container of the three sides; in pull mode also the images and the stores. */
  async function reset(pull: boolean): Promise<void> {
    await rig.apply(`reset-${Date.now()}`, []);
    await dockerCompose("down", "--remove-orphans").catch(() => {});
    const appContainers = (await docker("ps", "-aq", "--filter", `label=com.docker.compose.project=${APP}`)).trim();
    if (appContainers) await docker("rm", "-f", ...appContainers.split("\n"));
    if (pull) {
      for (const id of configDigests) await docker("rmi", "-f", id).catch(() => "");
      await docker("image", "prune", "-f");
      rmSync(join(rig.dir, "var/sota/reset-apps"), { recursive: true, force: true });
      rmSync(join(device!.storeDir, "blobs"), { recursive: true, force: true });
    }
    await run(["sync"]);
  }

  async function running(filter: string[]): Promise<number> {
    const out = (await docker("ps", "-q", ...filter)).trim();
    return out ? out.split("\n").length : 0;
  }

  const sides = {
    async ours(trial: string): Promise<number> {
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          applyPeak = Math.max(applyPeak, rssKb(agent.pid).rss);
          await Bun.sleep(10);
        }
      })();
      const t0 = performance.now();
      const f = await rig.apply(`bench-${trial}`, desired(trial));
      const ms = performance.now() - t0;
      sampling = false;
      await sampler;
      if (f.status !== "COMPLETED") throw new Error(`agent apply failed: ${JSON.stringify(f).slice(0, 1000)}`);
      if ((await running(["--filter", `name=^/${rig.tag}-c`])) !== N) throw new Error("agent: not all containers run");
      return ms;
    },
    async composeApp(trial: string): Promise<number> {
      await pub.commit({ [`${APP}/docker-compose.yml`]: composeFor(trial) });
      await pub.publish(++version);
      const t0 = performance.now();
      const r = await device!.fioup("update");
      const ms = performance.now() - t0;
      if (r.code !== 0) throw new Error(`fioup update failed (${r.code}): ${r.stderr.slice(-2000)}`);
      if ((await running(["--filter", `label=com.docker.compose.project=${APP}`])) !== N) throw new Error("compose-app flow: not all containers run");
      return ms;
    },
    async dockerCompose(trial: string): Promise<number> {
      writeFileSync(join(composeDir, "docker-compose.yml"), composeFor(trial));
      const t0 = performance.now();
      await dockerCompose("up", "-d");
      const ms = performance.now() - t0;
      if ((await running(["--filter", `label=com.docker.compose.project=${PROJECT}`])) !== N) throw new Error("docker-compose: not all containers run");
      return ms;
    },
  };
  type Side = keyof typeof sides;
  const order: Side[] = ["ours", "composeApp", "dockerCompose"];

  const results: Record<string, Record<Side, number[]>> = {};
  let trialNo = 0;
  for (const mode of ["pull", "local"] as const) {
    results[mode] = { ours: [], composeApp: [], dockerCompose: [] };
    for (let t = 0; t < TRIALS; t++) {
      const rotated = order.map((_, i) => order[(i + t) % order.length]!);
      for (const side of rotated) {
        await reset(mode === "pull");
        const ms = await sides[side](String(++trialNo));
        results[mode]![side].push(ms);
        log(`${mode} trial ${t + 1} ${side}: ${ms.toFixed(0)} ms`);
      }
    }
  }
  await reset(false);
  const best = (xs: number[]) => Math.round(Math.min(...xs));
  const summary = Object.fromEntries(
    Object.entries(results).map(([mode, r]) => [
      mode,
      {
        oursMs: best(r.ours),
        composeAppFlowMs: best(r.composeApp),
        dockerComposeUpMs: best(r.dockerCompose),
        oursOverDockerCompose: Number((best(r.ours) / best(r.dockerCompose)).toFixed(2)),
        all: r,
      },
    ]),
  );
  const busy = rssKb(agent.pid);
  const out = {
    components: N,
    layerKb: KB,
    trials: TRIALS,
    ...summary,
    agentRssKb: { idle: idle.rss, duringApplySampledPeak: applyPeak, peakHwm: busy.hwm },
    goal: "ours within 1.2x of docker-compose up -d",
  };
  process.stdout.write(JSON.stringify(out, (k, v) => (k === "all" ? Object.fromEntries(Object.entries(v).map(([s, xs]) => [s, (xs as number[]).map(Math.round)])) : v), 2) + "\n");
} finally {
  await device?.cleanup([APP]).catch(() => {});
  await gw.stop();
  await rig.stop();
}
