/**
 * fioup daemon memory (`bun bench/fioup/rss.ts [--mb 500] [--bin dist/fioup-linux-x64]`):
 * resident memory (VmRSS, sampled every 50 ms) idle and through a whole update of `--mb` MB of
 * images (2 images x 2 random layers: fetching, installing, starting), and the process's
 * high-water mark (VmHWM) at the end (`--mb 0`: idle only). Goals: under 60 MB idle, under 100 MB through the update.
 *
 * fioup runs as `bun fioup/main.ts`, or as the compiled binary given with `--bin` (or
 * $FIOUP_BIN), which is what devices run. Everything on loopback: a private dockerd, the
 * gateway with its embedded registry, an upstream docker-registry the images are pushed to.
 * Prints progress on stderr and one JSON result on stdout: RSS idle (last, mean and peak over
 * `--idle-seconds`) and by update state, where the resident memory is (the binary's code and
 * data, anonymous, libraries) at the idle and the update's peaks, CPU time and page faults per
 * idle cycle, and the daemon's CPU seconds through the update. `--env BUN_JSC_useBaselineJIT=0`
 * runs the daemon as lib/device/fioup.service does.
 */
import { readFileSync, readlinkSync } from "node:fs";
import { resolve } from "node:path";
import { benchArgs } from "../_args.ts";
import { Device, Publisher, freePort, httpGet, httpdCompose, httpdImage, pushImage, randomBytes, startDockerRegistry, startDockerd, startTestGateway } from "../../test/fioup/_setup.ts";
import { cpuSeconds, pageFaults, rssKb } from "../_proc.ts";

const { values } = benchArgs({ options: { mb: { type: "string", default: "500" }, bin: { type: "string" }, env: { type: "string", multiple: true }, "idle-seconds": { type: "string", default: "10" } } });
const totalMb = Number(values.mb);
if (values.bin) process.env.FIOUP_BIN = resolve(values.bin);
// --env K=V (repeatable): extra environment for fioup, e.g. a BUN_JSC_* option to try.
for (const kv of values.env ?? []) process.env[kv.slice(0, kv.indexOf("="))] = kv.slice(kv.indexOf("=") + 1);
const log = (s: string) => process.stderr.write(`[bench] ${s}\n`);
const mb = (kb: number) => Math.round(kb / 1024);

const dockerd = await startDockerd();
const upstream = await startDockerRegistry();
const gw = await startTestGateway();
const SMALL = "rsssmall";
const BIG = "rssbig";
const device = await Device.create(dockerd);
let stopDaemon = () => {};
try {
  const port = await freePort();
  const small = await pushImage(upstream, "bench/rss-small", "v1", httpdImage("rss v1"));
  const pub = await Publisher.create(gw, upstream, { [`${SMALL}/docker-compose.yml`]: httpdCompose(small, port) });
  await pub.publish(1);
  await device.register(gw);
  const daemon = device.spawn(["daemon"]);
  stopDaemon = () => daemon.kill("SIGKILL");
  // The daemon's log, kept whole for errors; each idle cycle ends in a line "... up to date".
  let cycles = 0;
  const daemonLog = (async () => {
    let text = "";
    const dec = new TextDecoder();
    for await (const chunk of daemon.stderr) {
      const t = dec.decode(chunk, { stream: true });
      cycles += t.split(" up to date").length - 1;
      text += t;
    }
    return text;
  })();
  const until = async (what: string, ok: () => Promise<boolean> | boolean, ms = 600_000) => {
    for (const end = Date.now() + ms; Date.now() < end; await Bun.sleep(100)) if (await ok()) return;
    throw new Error(`Timed out waiting for ${what}`);
  };
  await until("v1 to answer", async () => (await httpGet(port)) === "rss v1", 180_000).catch(async (e) => {
    daemon.kill("SIGTERM");
    throw new Error(`${(e as Error).message}; the daemon said:\n${await daemonLog}`);
  });

  // Idle: the daemon polls (every second in the test config) with nothing to do.
  await Bun.sleep(5000);
  let idlePeak = 0;
  let idleLast = 0;
  let idleSum = 0;
  let samples = 0;
  let idleSplit: Record<string, number> = {};
  const [cpu0, faults0, cycles0] = [cpuSeconds(daemon.pid), pageFaults(daemon.pid), cycles];
  for (const end = Date.now() + Number(values["idle-seconds"]) * 1000; Date.now() < end; await Bun.sleep(50)) {
    idleLast = rssKb(daemon.pid).rss;
    if (idleLast > idlePeak) idleSplit = residentBySource(daemon.pid);
    idlePeak = Math.max(idlePeak, idleLast);
    idleSum += idleLast;
    samples++;
  }
  const idleCycles = cycles - cycles0;
  const [cpu1, faults1] = [cpuSeconds(daemon.pid), pageFaults(daemon.pid)];
  const perCycle = (x: number, digits: number) => (idleCycles > 0 ? Number((x / idleCycles).toFixed(digits)) : null);
  log(`idle: RSS ${mb(idleLast)} MB (over ${values["idle-seconds"]} s: mean ${mb(idleSum / samples)}, peak ${mb(idlePeak)} MB), VmHWM since start ${mb(rssKb(daemon.pid).hwm)} MB`);
  log(`idle: ${idleCycles} cycles, CPU ${((cpu1 - cpu0) * 1000).toFixed(0)} ms, faults minor ${faults1.minor - faults0.minor} major ${faults1.major - faults0.major}`);
  log(`idle resident by source at the peak (MB): ${JSON.stringify(idleSplit)}`);

  const idle = {
    idleMb: mb(idleLast),
    idleMeanMb: mb(idleSum / samples),
    idlePeakMb: mb(idlePeak),
    idleSplitMb: idleSplit,
    idleCycles,
    idleCpuMsPerCycle: perCycle((cpu1 - cpu0) * 1000, 1),
    idleMinorFaultsPerCycle: perCycle(faults1.minor - faults0.minor, 0),
    idleMajorFaultsPerCycle: perCycle(faults1.major - faults0.major, 0),
  };
  const updating = totalMb > 0 ? await measureUpdate() : {};
  daemon.kill("SIGTERM");
  await daemon.exited;
  process.stdout.write(`${JSON.stringify({ bench: "fioup/rss", fioup: process.env.FIOUP_BIN ?? "bun fioup/main.ts", ...idle, ...updating }, null, 2)}\n`);

  async function measureUpdate() {
    const layerBytes = Math.floor((totalMb * 1_000_000) / 4);
    log(`pushing 2 images with 2 x ${Math.round(layerBytes / 1e6)} MB random layers`);
    const refs: string[] = [];
    for (const i of [1, 2]) refs.push(await pushImage(upstream, `bench/rss-big${i}`, "v1", { cmd: ["sleep", "3600"], layers: [{ "/a.bin": randomBytes(layerBytes) }, { "/b.bin": randomBytes(layerBytes) }] }));
    await pub.commit({ [`${BIG}/docker-compose.yml`]: `services:\n${refs.map((r, i) => `  s${i}:\n    image: ${r}\n    stop_grace_period: 1s\n`).join("")}` });
    const before = device.updateState();
    const cpuIdle = cpuSeconds(daemon.pid);
    await pub.publish(2);
    const peakByState: Record<string, number> = {};
    let peak = 0;
    let peakSplit: Record<string, number> = {};
    let seen = false;
    const t0 = Date.now();
    for (const end = Date.now() + 900_000; Date.now() < end; await Bun.sleep(50)) {
      const rss = rssKb(daemon.pid).rss;
      const st = device.updateState();
      if (rss > peak) peakSplit = residentBySource(daemon.pid);
      peak = Math.max(peak, rss);
      if (st && (st.state !== before?.state || st.bytesFetched !== before?.bytesFetched)) seen = true;
      if (seen && st) peakByState[st.state] = Math.max(peakByState[st.state] ?? 0, rss);
      if (seen && st?.state === "completed") break;
  }
  if (!seen || device.updateState()?.state !== "completed") throw new Error(`The update did not complete: ${JSON.stringify(device.updateState())}`);
  const updateSeconds = (Date.now() - t0) / 1000;
  const hwm = rssKb(daemon.pid).hwm;
  const cpu = cpuSeconds(daemon.pid);
  // Back to idle: the cycle that ran the update ends (report, GC, give back pages), then it polls.
  await Bun.sleep(10_000);
  const afterUpdate = rssKb(daemon.pid).rss;
  const afterSplit = residentBySource(daemon.pid);
  log(`idle again 10 s after the update: RSS ${mb(afterUpdate)} MB, by source ${JSON.stringify(afterSplit)}`);
  log(`update of ${totalMb} MB in ${updateSeconds.toFixed(1)} s: sampled peak RSS ${mb(peak)} MB, VmHWM ${mb(hwm)} MB, by state ${JSON.stringify(Object.fromEntries(Object.entries(peakByState).map(([k, v]) => [k, mb(v)])))}`);
  return {
    updateMb: totalMb,
    updatingPeakMb: mb(peak),
    hwmMb: mb(hwm),
    peakSplitMb: peakSplit,
    idleAfterUpdateMb: mb(afterUpdate),
    idleAfterUpdateSplitMb: afterSplit,
    peakByStateMb: Object.fromEntries(Object.entries(peakByState).map(([k, v]) => [k, mb(v)])),
    updateSeconds: Number(updateSeconds.toFixed(1)),
    daemonCpuSeconds: Number((cpu - cpuIdle).toFixed(2)),
    goals: { idleUnder60: idle.idlePeakMb < 60, updateUnder100: mb(Math.max(peak, hwm)) < 100 },
  };
  }
} finally {
  stopDaemon();
  await device.cleanup([SMALL, BIG]).catch(() => {});
  await gw.stop();
  await upstream.stop();
  await dockerd.stop();
}

/**
 * Where a process's resident memory is, from /proc/PID/smaps, in MB: the executable's own pages
 * (code, read-only data, writable data), shared libraries, anonymous memory (JavaScript heap,
 * malloc arenas, JIT code, thread stacks) and the rest.
 */
function residentBySource(pid: number): Record<string, number> {
  const exe = (() => {
    try {
      return readlinkSync(`/proc/${pid}/exe`);
    } catch {
      return "";
    }
  })();
  const kb: Record<string, number> = {};
  let key = "";
  for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    const m = /^[0-9a-f]+-[0-9a-f]+ (\S{4}) \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (m) {
      const [, perms, path] = m as unknown as [string, string, string];
      key = path === exe ? (perms.includes("x") ? "binaryCode" : perms.includes("w") ? "binaryData" : "binaryReadOnly")
        : path.startsWith("/") ? "libraries"
        : path === "" || path === "[heap]" || path.startsWith("[anon") ? "anonymous"
        : path.startsWith("[stack") ? "stack" : "other";
      continue;
    }
    const r = /^Rss:\s+(\d+) kB/.exec(line);
    if (r) kb[key] = (kb[key] ?? 0) + Number(r[1]);
  }
  return Object.fromEntries(Object.entries(kb).map(([k, v]) => [k, Math.round(v / 102.4) / 10]));
}
