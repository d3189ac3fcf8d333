/**
 * bench/push: devices held by push against the same devices polling, and against the floor.
 *
 * N simulated devices (each its own key and certificate, registered like fioup) wait for news:
 * - push (ours): each holds GET /repo/wait; we measure the gateway's RSS with no device held, with
 *   half of them held and with all of them held (MB per 1,000 held connections; goal under 10),
 *   and the time from the publish being signed to the last device told (goal under 2 s for 10,000);
 * - bare (the floor): the same devices hold the same request on a bare `Bun.listen` server with
 *   the gateway's TLS setup that keeps nothing per connection (bench/push/_bare.ts): what TLS
 *   sockets cost in Bun, measured the same way in the same run;
 * - polling (the peer: what a fleet without push does): each polls /repo/timestamp.json every
 *   P seconds (default 5 s, far more often than the usual 300 s); we measure the same time to the
 *   last device told, and the requests per second the gateway serves meanwhile, idle or not.
 * The sides run one after the other in the same run, order alternating over the rounds, with
 * `sync` between them.
 *
 * Two memory figures per round, because the first round after a start costs more than the next:
 * - "held - idle": RSS with all N held minus RSS with none, per 1,000;
 * - "slope": RSS with N held minus RSS with N/2 held, per 1,000 of the difference: the marginal
 *   cost of one more held connection, without what the first connections pay once (the heap and
 *   the allocator growing into their first pages, code compiled on first use).
 * Memory is read after a full garbage collection in the server (bench/push/_probe.ts, preloaded),
 * so it is what held connections keep alive, not garbage left by their handshakes; the JS object
 * types that grew the most while held go to stderr. With PUSH_PROBE_SNAPSHOT=1 the probe also
 * writes heap snapshots (compare two with bench/push/heap-diff.ts).
 *
 * Run: bun bench/push/run.ts [--devices 10000] [--rounds 3] [--poll-seconds 5] [--sides push,bare,poll]
 *
 * @module
 */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { benchArgs } from "../_args.ts";
import type { RegistrationResponse } from "../../lib/api/index.ts";
import { EMPTY_SHA256 } from "../../lib/api/target.ts";
import { makeDeviceCsr } from "../../test/gateway/_device.ts";
import { startGateway, type GatewayHandle } from "../../test/harness/gateway.ts";

// Bun's fetch runs at most BUN_CONFIG_MAX_HTTP_REQUESTS (default 256) requests at once, read at
// start-up: holding thousands of long polls from one process needs it raised before we start.
if (!process.env.BUN_CONFIG_MAX_HTTP_REQUESTS) {
  const child = Bun.spawn([process.execPath, ...process.argv.slice(1)], { env: { ...process.env, BUN_CONFIG_MAX_HTTP_REQUESTS: "65535" }, stdio: ["inherit", "inherit", "inherit"] });
  process.exit(await child.exited);
}

const { values } = benchArgs({
  options: { devices: { type: "string", default: "10000" }, rounds: { type: "string", default: "3" }, "poll-seconds": { type: "string", default: "5" }, sides: { type: "string", default: "push,bare,poll" } },
});
const N = Number(values.devices);
const ROUNDS = Number(values.rounds);
const POLL = Number(values["poll-seconds"]);
const BATCH = 250;
if (!(N > 1 && ROUNDS > 0 && POLL > 0)) throw new Error("--devices (at least 2), --rounds and --poll-seconds must be positive numbers");
type Side = "push" | "bare" | "poll";
const SIDES = values.sides!.split(",") as Side[];
if (!SIDES.length || !SIDES.every((s) => s === "push" || s === "bare" || s === "poll")) throw new Error(`Invalid --sides "${values.sides}": expected a comma-separated list of push, bare and poll`);
const log = (l: string) => process.stderr.write(`${l}\n`);

interface Dev {
  cert: string;
  key: string;
}

interface Probe {
  rss: number;
  heapSize: number;
  extraMemorySize: number;
  objectCount: number;
  top: [string, number][];
}

/** A process holding requests, with bench/push/_probe.ts preloaded. */
interface Holder {
  url: string;
  pid: number;
  probeOut: string;
}
const probeOut = (name: string) => join(process.env.TMPDIR ?? "/tmp", `push-probe-${process.pid}-${name}.json`);

/** The process's memory after a full GC (bench/push/_probe.ts answers SIGUSR2). */
async function probe(h: Holder): Promise<Probe> {
  rmSync(h.probeOut, { force: true });
  process.kill(h.pid, "SIGUSR2");
  for (let i = 0; i < 600 && !existsSync(h.probeOut); i++) await Bun.sleep(100);
  return JSON.parse(readFileSync(h.probeOut, "utf8")) as Probe;
}
/** Requests the process holds (the probe writes the count every 250 ms). */
const heldBy = (h: Holder) => Number(existsSync(`${h.probeOut}.waiting`) ? readFileSync(`${h.probeOut}.waiting`, "utf8") || 0 : 0);
const MB = 1024 * 1024;
/** The object types whose count grew the most between two probes. */
function grown(a: Probe, b: Probe): string {
  const before = new Map(a.top);
  return b.top
    .map(([k, v]) => [k, v - (before.get(k) ?? 0)] as const)
    .filter(([, d]) => d > N / 2)
    .sort((x, y) => y[1] - x[1])
    .map(([k, d]) => `${k} +${d}`)
    .join(", ");
}

async function retry<T>(fn: () => Promise<T>, tries = 5): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (i >= tries) throw err;
      await Bun.sleep(500 * i);
    }
  }
}

async function pool<T>(n: number, items: T[], fn: (t: T, i: number) => Promise<void>) {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => { while (next < items.length) { const i = next++; await fn(items[i]!, i); } }));
}

const PROBE = join(import.meta.dir, "_probe.ts");
// Every simulated device comes from 127.0.0.1: lift the per-address cap (meant for unauthenticated
// clients during their handshake) and the total cap, which a fleet on push must size to its devices.
const gw: GatewayHandle = await startGateway({
  command: [process.execPath, "--preload", PROBE, join(import.meta.dir, "../../gateway/main.ts")],
  env: { PUSH_PROBE_OUT: probeOut("gateway"), PUSH_PROBE_SNAPSHOT: process.env.PUSH_PROBE_SNAPSHOT },
  args: ["--max-connections", String(N * 2 + 1000), "--max-connections-per-address", String(N * 2 + 1000)],
});
let bareProc: ReturnType<typeof Bun.spawn> | undefined;
try {
  const ours: Holder = { url: gw.url, pid: gw.pid, probeOut: probeOut("gateway") };
  let bare: Holder | undefined;
  if (SIDES.includes("bare")) {
    const pki = join(gw.dataDir, "pki");
    bareProc = Bun.spawn([process.execPath, "--preload", PROBE, join(import.meta.dir, "_bare.ts"), join(pki, "server.pem"), join(pki, "server.key"), join(pki, "ca.pem")], {
      env: { ...process.env, PUSH_PROBE_OUT: probeOut("bare") },
      stdout: "pipe",
      stderr: "inherit",
    });
    const reader = (bareProc.stdout as ReadableStream<Uint8Array>).getReader();
    const port = Number(new TextDecoder().decode((await reader.read()).value).trim());
    if (!port) throw new Error("bench/push/_bare.ts did not say its port");
    bare = { url: `https://127.0.0.1:${port}`, pid: bareProc.pid, probeOut: probeOut("bare") };
  }

  const tokenRes = await gw.adminFetch("/admin/tokens", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ tags: ["main"], maxUses: N }) });
  const { token } = (await tokenRes.json()) as { token: string };
  const devs: Dev[] = new Array(N);
  const t0 = performance.now();
  await pool(32, Array.from({ length: N }, (_, i) => i), async (i) => {
    const k = await makeDeviceCsr();
    const res = await fetch(`${gw.url}/devices`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ name: `push-${i}`, uuid: k.uuid, csr: k.csrPem, "hardware-id": "amd64-linux" }),
      tls: { ca: gw.caPem },
    } as RequestInit);
    if (res.status !== 201) throw new Error(`register ${i}: HTTP ${res.status} ${await res.text()}`);
    devs[i] = { cert: ((await res.json()) as RegistrationResponse).certificate, key: k.keyPem };
    if ((i + 1) % 2000 === 0) log(`registered ${i + 1}/${N}`);
  });
  log(`registered ${N} devices in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  let version = 100;
  const publish = async () => {
    const v = String(version++);
    // A fresh connection each time, retried: while 10,000 devices poll, the gateway's deadlines can
    // cut a handshake that waits too long for the CPU.
    const res = await retry(() => gw.adminFetch("/admin/targets", {
      keepalive: false,
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ targets: { [`amd64-linux-${v}`]: { length: 0, hashes: { sha256: EMPTY_SHA256 }, custom: { version: v, hardwareIds: ["amd64-linux"], tags: ["main"], docker_compose_apps: { web: { uri: `${gw.host}/main/web@sha256:${"e".repeat(64)}` } } } } } }),
    }));
    if (res.status >= 300) throw new Error(`publish: HTTP ${res.status} ${await res.text()}`);
  };
  const currentVersion = async () => ((await (await gw.adminFetch("/repo/timestamp.json", { headers: { "x-bench": "1" }, keepalive: false })).json()) as { signed: { version: number } }).signed.version;
  const devFetch = (url: string, d: Dev, path: string, signal?: AbortSignal) => fetch(`${url}${path}`, { tls: { ca: gw.caPem, cert: d.cert, key: d.key }, signal } as RequestInit);

  /** Every device holds a wait on `h`: memory idle, half held and all held; on ours, then a publish and the time until all are told. */
  async function holdRound(h: Holder, isOurs: boolean) {
    const after = isOurs ? await currentVersion() : 0;
    await Bun.sleep(500); // the last round's waiters are gone
    const idle = await probe(h);
    let told = 0;
    let lastTold = 0;
    let failed = 0;
    const why = new Map<string, number>();
    const fail = (reason: string) => {
      failed++;
      why.set(reason, (why.get(reason) ?? 0) + 1);
    };
    // Devices connect in batches, each once the previous one is held: a fleet's devices come
    // and go spread over time, not all in the same second (and the handshakes need the CPU).
    // A wait that ends without news (204: its timeout, if connecting the rest took that long) is
    // asked again, as fioup's daemon does; so is a connection cut before it was held (on a loaded
    // machine a handshake can outlast the gateway's 10 s head deadline), after a pause, up to 3
    // times. The bare server never answers: its waits end when we leave.
    let published = false;
    const leave = new AbortController();
    const hold = async (d: Dev): Promise<void> => {
      for (let cut = 0; ; ) {
        try {
          const r = await devFetch(h.url, d, `/repo/wait?after=${after}&timeout=55`, leave.signal);
          await r.arrayBuffer();
          if (r.status === 204 && !published) continue;
          if (r.status === 200) { told++; lastTold = performance.now(); } else fail(`HTTP ${r.status}`);
        } catch (err) {
          if (leave.signal.aborted) return;
          if (!published && ++cut <= 3) {
            await Bun.sleep(1000 + Math.random() * 2000);
            continue;
          }
          fail((err as Error).message ?? String(err));
        }
        return;
      }
    };
    const held: Promise<void>[] = [];
    let mid: { probe: Probe; held: number } | undefined;
    for (let start = 0; start < N; start += BATCH) {
      for (const d of devs.slice(start, start + BATCH)) held.push(hold(d));
      const want = Math.min(N, start + BATCH) - failed;
      for (let i = 0; i < 200 && heldBy(h) < want; i++) await Bun.sleep(50);
      if (!mid && start + BATCH >= N / 2) {
        const n = heldBy(h);
        mid = { probe: await probe(h), held: n };
      }
    }
    const heldNow = heldBy(h);
    const all = await probe(h);
    log(`held ${heldNow}; grown: ${grown(idle, all)}; JS heap ${((all.heapSize - idle.heapSize) / MB).toFixed(1)} MB more, extra ${((all.extraMemorySize - idle.extraMemorySize) / MB).toFixed(1)} MB`);
    let publishMs = 0;
    let signedAt = 0;
    if (isOurs) {
      const t = performance.now();
      published = true;
      await publish();
      signedAt = performance.now();
      publishMs = signedAt - t;
    } else leave.abort();
    await Promise.all(held);
    if (why.size) log(`failed: ${JSON.stringify(Object.fromEntries(why))}`);
    const per1000 = (bytes: number, n: number) => (bytes / MB / n) * 1000;
    return {
      idleRssMb: idle.rss / MB,
      heldRssMb: all.rss / MB,
      held: heldNow,
      mbPer1000: per1000(all.rss - idle.rss, heldNow),
      slopeMbPer1000: per1000(all.rss - mid!.probe.rss, heldNow - mid!.held),
      heapMbPer1000: per1000(all.heapSize - idle.heapSize, heldNow),
      ...(isOurs ? { toldMs: lastTold - signedAt, publishMs, told } : {}),
      failed,
    };
  }

  async function pollRound() {
    const after = await currentVersion();
    let told = 0;
    let lastTold = 0;
    let requests = 0;
    const stop = new AbortController();
    let signedAt = Infinity;
    const loops = devs.map(async (d, i) => {
      await Bun.sleep((i / N) * POLL * 1000); // spread, as jittered devices are
      for (;;) {
        if (stop.signal.aborted) return;
        try {
          const r = await devFetch(gw.url, d, "/repo/timestamp.json", stop.signal);
          requests++;
          const v = ((await r.json()) as { signed: { version: number } }).signed.version;
          if (v > after && performance.now() >= signedAt) { told++; lastTold = performance.now(); return; }
        } catch {
          if (stop.signal.aborted) return;
        }
        await Bun.sleep(POLL * 1000);
      }
    });
    await Bun.sleep(POLL * 1000); // every device has started polling
    const r0 = requests;
    const w0 = performance.now();
    await Bun.sleep(POLL * 1000);
    const idleRps = ((requests - r0) / (performance.now() - w0)) * 1000;
    await publish();
    signedAt = performance.now();
    const deadline = performance.now() + POLL * 1000 * 3;
    while (told < N && performance.now() < deadline) await Bun.sleep(100);
    stop.abort();
    await Promise.all(loops);
    return { toldMs: lastTold - signedAt, told, requestsPerSecond: idleRps };
  }

  type HoldResult = Awaited<ReturnType<typeof holdRound>>;
  const results: { push: HoldResult[]; bare: HoldResult[]; poll: Awaited<ReturnType<typeof pollRound>>[] } = { push: [], bare: [], poll: [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const side of r % 2 === 0 ? SIDES : SIDES.toReversed()) {
      Bun.spawnSync(["sync"]);
      if (side === "push") results.push.push(await holdRound(ours, true));
      else if (side === "bare") results.bare.push(await holdRound(bare!, false));
      else results.poll.push(await pollRound());
      log(`round ${r + 1} ${side}: ${JSON.stringify(results[side].at(-1))}`);
    }
  }
  const load = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  const range = (xs: number[], digits = 1) => (xs.length ? `${Math.min(...xs).toFixed(digits)} to ${Math.max(...xs).toFixed(digits)}` : "-");
  /** First round ("cold": the process's first N connections) apart from the others ("warm"). */
  const memory = (xs: HoldResult[]) => {
    const [first, ...rest] = xs;
    const line = (x: HoldResult[]) => `held-idle ${range(x.map((y) => y.mbPer1000))}, slope N/2->N ${range(x.map((y) => y.slopeMbPer1000))}, JS heap ${range(x.map((y) => y.heapMbPer1000))}; idle ${range(x.map((y) => y.idleRssMb), 0)} MB, held ${range(x.map((y) => y.heldRssMb), 0)} MB`;
    return `  MB of RSS per 1,000 held, first round: ${line([first!])}\n  later rounds: ${rest.length ? line(rest) : "(one round only)"}`;
  };
  if (results.push.length) {
    const xs = results.push;
    const held = Math.min(...xs.map((x) => x.held));
    console.log(`push (ours):   at least ${held} of ${N} devices held; all told ${range(xs.map((x) => x.toldMs! / 1000), 2)} s after signing over the rounds (goal < 2 s); ${xs.reduce((n, x) => n + x.failed, 0)} failed`);
    console.log(memory(xs));
  }
  if (results.bare.length) {
    console.log(`bare Bun.listen mTLS (floor): at least ${Math.min(...results.bare.map((x) => x.held))} of ${N} held`);
    console.log(memory(results.bare));
  }
  if (results.push.length && results.bare.length) {
    // Round by round (the same round's two sides ran back to back, under the same load).
    const rounds = Math.min(results.push.length, results.bare.length);
    const m = (k: "mbPer1000" | "slopeMbPer1000") => Array.from({ length: rounds }, (_, i) => (results.push[i]![k] - results.bare[i]![k]).toFixed(1)).join(", ");
    console.log(`ours above the floor per 1,000 held, round by round: held-idle ${m("mbPer1000")} MB; slope ${m("slopeMbPer1000")} MB`);
  }
  if (results.poll.length) {
    const bq = results.poll.reduce((a, b) => (b.toldMs < a.toldMs ? b : a));
    console.log(`polling every ${POLL}s (peer): all told ${bq.toldMs.toFixed(0)} ms after signing, ${bq.told}/${N}; ${bq.requestsPerSecond.toFixed(0)} requests/s while nothing changes`);
    if (results.push.length) console.log(`ratio (time to all told, best push/best poll): ${(Math.min(...results.push.map((x) => x.toldMs!)) / bq.toldMs).toFixed(3)}`);
  }
  console.log(`load average ${load()} (1, 5, 15 min)`);
} finally {
  bareProc?.kill();
  await gw.stop();
}
