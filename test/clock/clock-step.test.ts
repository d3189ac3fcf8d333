/**
 * NTP setting the clock while `fioup update` waits for a new release to run. A board without a
 * battery-backed clock boots at its image's date (or a restored RTC ahead of time), resumes an
 * update, and NTP steps the wall clock while the start step watches the new containers. The real
 * fioup runs under libfaketime, with its offset read from a file on every call, so the test steps
 * the clock under the running process; the monotonic clock stays real, as a real step leaves it.
 * A step forward must not spend the start's timeout at once (a good release rolled back and
 * marked bad); a step back must not stretch the settle period by the step (the update hangs).
 * Real gateway, docker-registry and dockerd, as in test/fioup.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DockerEngine, type ContainerInspect } from "../../fioup/runtime/docker-engine.ts";
import { projectName } from "../../fioup/runtime/compose.ts";
import { tempDir } from "../harness/tmp.ts";
import { deviceRig, httpdImage, httpGet, pushImage, ROOT, slowHealthCompose, type DeviceRig } from "../fioup/_setup.ts";

const ARCH = process.arch === "arm64" ? "aarch64" : "x86_64";
const LIBFAKETIME = `/usr/lib/${ARCH}-linux-gnu/faketime/libfaketime.so.1`;
const HOURS_12 = 12 * 3600;
const APP = `step${process.pid}`;
const REPO = `step/web${process.pid}`;

let rig: DeviceRig;
let clockDir: string;

beforeAll(async () => {
  if (!existsSync(LIBFAKETIME)) throw new Error(`${LIBFAKETIME} is missing: install Debian's faketime (scripts/setup.sh)`);
  clockDir = await tempDir("clock-step-");
  rig = await deviceRig({ app: APP, repo: REPO, body: "v1" });
}, 180_000);
afterAll(async () => await rig?.stop(), 60_000);

/** `fioup update` on a clock `offset` seconds off, read from a file the test rewrites to step it. */
function updateOnFakeClock(offset: number) {
  const file = join(clockDir, "faketime");
  const step = (to: number) => writeFileSync(file, `${to >= 0 ? "+" : ""}${to}s\n`);
  step(offset);
  const cmd = process.env.FIOUP_BIN ? [process.env.FIOUP_BIN] : [process.execPath, join(ROOT, "fioup/main.ts")];
  const proc = Bun.spawn([...cmd, "update", "--format", "json"], {
    env: { ...process.env, ...rig.device.env(), LD_PRELOAD: LIBFAKETIME, FAKETIME_TIMESTAMP_FILE: file, FAKETIME_NO_CACHE: "1", FAKETIME_DONT_FAKE_MONOTONIC: "1" },
    stdout: "pipe",
    stderr: "pipe",
    cwd: ROOT,
  });
  const seen = { stderr: "" };
  void (async () => {
    const dec = new TextDecoder();
    for await (const c of proc.stderr) seen.stderr += dec.decode(c, { stream: true });
  })();
  const stdout = new Response(proc.stdout).text();
  /** Resolves once fioup said `text` (throws if it exited first). */
  const said = async (text: string) => {
    while (!seen.stderr.includes(text)) {
      if (proc.exitCode !== null) throw new Error(`fioup exited ${proc.exitCode} before saying "${text}": ${seen.stderr}`);
      await Bun.sleep(50);
    }
  };
  /** Its exit code, or "hung" if it still runs after `ms` (then it is killed). */
  const exit = async (ms: number): Promise<number | "hung"> => {
    const code = await Promise.race([proc.exited, Bun.sleep(ms).then(() => "hung" as const)]);
    if (code === "hung") {
      proc.kill();
      await proc.exited;
    }
    await stdout;
    return code;
  };
  return { step, said, exit, seen, exited: () => proc.exitCode !== null };
}

/**
 * Waits until a container of the app that the running update started (one of another ID than
 * the release before had) is in the state `reached` reads, or the update ended (its exit says why).
 */
async function newContainer(run: { exited(): boolean }, reached: (c: ContainerInspect) => boolean): Promise<void> {
  const engine = new DockerEngine(rig.dockerd.host);
  while (!run.exited()) {
    const cs = await engine.listContainers([`com.docker.compose.project=${projectName(APP)}`]);
    const fresh = await Promise.all(cs.filter((c) => !oldContainers.has(c.Id)).map((c) => engine.inspectContainer(c.Id)));
    if (fresh.some((c) => c && reached(c))) return;
    await Bun.sleep(50);
  }
}

/** Publishes `version`: the app on an image of its own, healthy `healthyAfter` s after its start. */
async function publish(version: number, healthyAfter: number): Promise<void> {
  const ref = await pushImage(rig.upstream, REPO, `v${version}`, httpdImage(`v${version}`));
  await rig.pub.commit({ [`${APP}/docker-compose.yml`]: slowHealthCompose(ref, rig.port, healthyAfter) });
  await rig.pub.publish(version);
  const engine = new DockerEngine(rig.dockerd.host);
  oldContainers = new Set((await engine.listContainers([`com.docker.compose.project=${projectName(APP)}`])).map((c) => c.Id));
}

/** The app's containers before the update under test (see {@link newContainer}). */
let oldContainers = new Set<string>();

test("a step forward while the new release comes up does not roll it back: it runs and is not marked bad", async () => {
  await publish(2, 10);
  const run = updateOnFakeClock(-HOURS_12); // booted at its image's date, 12 h behind
  await run.said("waiting until it runs");
  await newContainer(run, (c) => c.State.Running); // compose up is done: the health wait has begun
  await Bun.sleep(500);
  run.step(0); // NTP sets the time: 12 h forward, the app still some 9 s from healthy
  const code = await run.exit(150_000);
  expect({ code, stderr: code === 0 ? "" : run.seen.stderr }).toEqual({ code: 0, stderr: "" });
  const st = await rig.device.fioup("status");
  expect(st.json.badTargets ?? []).toEqual([]);
  expect(await httpGet(rig.port)).toContain("v2");
}, 240_000);

test("a step back while the new release settles does not hold the update for the length of the step", async () => {
  await publish(3, 4);
  const run = updateOnFakeClock(0);
  await run.said("waiting until it runs");
  // Step back once fioup has seen the container healthy, inside its 1.5 s settle period: the
  // settle's start is then 12 h in the future by the wall clock.
  await newContainer(run, (c) => c.State.Health?.Status === "healthy");
  await Bun.sleep(700); // fioup polls every 250 ms
  run.step(-HOURS_12);
  const code = await run.exit(60_000);
  expect({ code, stderr: code === 0 ? "" : run.seen.stderr }).toEqual({ code: 0, stderr: "" });
  expect(await httpGet(rig.port)).toContain("v3");
}, 240_000);
