/**
 * bench/push: devices held by push against the same devices polling.
 *
 * N simulated devices (each its own key and certificate, registered like fioup) wait for news:
 * - push (ours): each holds GET /repo/wait; we measure the gateway's RSS with no device held and
 *   with all of them held (MB per 1,000 held connections; goal under 10), and the time from the
 *   publish being signed to the last device told (goal under 2 s for 10,000);
 * - polling (the peer: what a fleet without push does): each polls /repo/timestamp.json every
 *   P seconds (default 5 s, far more often than the usual 300 s); we measure the same time to the
 *   last device told, and the requests per second the gateway serves meanwhile, idle or not.
 * The two sides run one after the other in the same run, order alternating over the rounds, with
 * `sync` between them; best (lowest) of the rounds for each side.
 *
 * Memory is read after a full garbage collection in the gateway (bench/push/_probe.ts, preloaded),
 * so the figure is what held connections keep alive, not garbage left by their handshakes; the
 * JS object types that grew the most while held go to stderr.
 *
 * Run: bun bench/push/run.ts [--devices 10000] [--rounds 3] [--poll-seconds 5] [--sides push|poll|both]
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
  options: { devices: { type: "string", default: "10000" }, rounds: { type: "string", default: "3" }, "poll-seconds": { type: "string", default: "5" }, sides: { type: "string", default: "both" } },
});
const N = Number(values.devices);
const ROUNDS = Number(values.rounds);
const POLL = Number(values["poll-seconds"]);
const BATCH = 250;
if (!(N > 0 && ROUNDS > 0 && POLL > 0)) throw new Error("--devices, --rounds and --poll-seconds must be positive numbers");
const SIDES = values.sides === "both" ? ["push", "poll"] : [values.sides!];
if (!SIDES.every((s) => s === "push" || s === "poll")) throw new Error("--sides must be push, poll or both");
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
const PROBE_OUT = join(process.env.TMPDIR ?? "/tmp", `push-probe-${process.pid}.json`);
/** The gateway's memory after a full GC (bench/push/_probe.ts answers SIGUSR2). */
async function probe(pid: number): Promise<Probe> {
  rmSync(PROBE_OUT, { force: true });
  process.kill(pid, "SIGUSR2");
  for (let i = 0; i < 300 && !existsSync(PROBE_OUT); i++) await Bun.sleep(100);
  return JSON.parse(readFileSync(PROBE_OUT, "utf8")) as Probe;
}
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

// Every simulated device comes from 127.0.0.1: lift the per-address cap (meant for unauthenticated
// clients during their handshake) and the total cap, which a fleet on push must size to its devices.
const gw: GatewayHandle = await startGateway({
  command: [process.execPath, "--preload", join(import.meta.dir, "_probe.ts"), join(import.meta.dir, "../../gateway/main.ts")],
  env: { PUSH_PROBE_OUT: PROBE_OUT },
  args: ["--max-connections", String(N * 2 + 1000), "--max-connections-per-address", String(N * 2 + 1000)],
});
try {
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
  /** Devices the gateway holds (the probe writes the count every 250 ms). */
  const waiting = () => Number(existsSync(`${PROBE_OUT}.waiting`) ? readFileSync(`${PROBE_OUT}.waiting`, "utf8") || 0 : 0);
  const devFetch = (d: Dev, path: string, signal?: AbortSignal) => fetch(`${gw.url}${path}`, { tls: { ca: gw.caPem, cert: d.cert, key: d.key }, signal } as RequestInit);

  async function pushRound() {
    const after = await currentVersion();
    await Bun.sleep(500); // the last round's waiters are gone
    const idle = await probe(gw.pid);
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
    // asked again, as fioup's daemon does.
    let published = false;
    const hold = async (d: Dev): Promise<void> => {
      for (;;) {
        try {
          const r = await devFetch(d, `/repo/wait?after=${after}&timeout=55`);
          await r.arrayBuffer();
          if (r.status === 204 && !published) continue;
          if (r.status === 200) { told++; lastTold = performance.now(); } else fail(`HTTP ${r.status}`);
        } catch (err) {
          fail((err as Error).message ?? String(err));
        }
        return;
      }
    };
    const held: Promise<void>[] = [];
    for (let start = 0; start < N; start += BATCH) {
      for (const d of devs.slice(start, start + BATCH)) held.push(hold(d));
      const want = Math.min(N, start + BATCH) - failed;
      for (let i = 0; i < 200 && waiting() < want; i++) await Bun.sleep(50);
    }
    const heldNow = waiting();
    const heldProbe = await probe(gw.pid);
    log(`held ${heldNow}; grown: ${grown(idle, heldProbe)}; JS heap ${((heldProbe.heapSize - idle.heapSize) / MB).toFixed(1)} MB more, extra ${((heldProbe.extraMemorySize - idle.extraMemorySize) / MB).toFixed(1)} MB`);
    const t = performance.now();
    published = true;
    await publish();
    const signedAt = performance.now();
    await Promise.all(held);
    const idleRssMb = idle.rss / MB;
    const heldRssMb = heldProbe.rss / MB;
    if (why.size) log(`failed: ${JSON.stringify(Object.fromEntries(why))}`);
    return { idleRssMb, heldRssMb, held: heldNow, mbPer1000: ((heldRssMb - idleRssMb) / heldNow) * 1000, heapMbPer1000: ((heldProbe.heapSize - idle.heapSize) / MB / heldNow) * 1000, toldMs: lastTold - signedAt, publishMs: signedAt - t, told, failed };
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
          const r = await devFetch(d, "/repo/timestamp.json", stop.signal);
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

  const push: Awaited<ReturnType<typeof pushRound>>[] = [];
  const poll: Awaited<ReturnType<typeof pollRound>>[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    for (const side of r % 2 === 0 ? SIDES : SIDES.toReversed()) {
      Bun.spawnSync(["sync"]);
      if (side === "push") push.push(await pushRound());
      else poll.push(await pollRound());
      log(`round ${r + 1} ${side}: ${JSON.stringify(side === "push" ? push.at(-1) : poll.at(-1))}`);
    }
  }
  const best = <T>(xs: T[], key: (x: T) => number) => xs.reduce((a, b) => (key(b) < key(a) ? b : a));
  const load = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  if (push.length) {
    const bp = best(push, (x) => x.toldMs);
    const range = (f: (x: (typeof push)[number]) => number) => {
      const xs = push.map(f);
      return `${Math.min(...xs).toFixed(1)} to ${Math.max(...xs).toFixed(1)}`;
    };
    console.log(`push (ours):   ${bp.held} of ${N} devices held; all told ${bp.toldMs.toFixed(0)} ms after signing at best, ${range((x) => x.toldMs / 1000)} s over the rounds (goal < 2 s); ${bp.failed} failed`);
    console.log(`  gateway RSS after GC per 1,000 held: ${range((x) => x.mbPer1000)} MB over the rounds, ${push[0]!.mbPer1000.toFixed(1)} MB in the first (goal < 10); JS heap ${range((x) => x.heapMbPer1000)} MB of it; idle ${range((x) => x.idleRssMb)} MB, held ${range((x) => x.heldRssMb)} MB`);
  }
  if (poll.length) {
    const bq = best(poll, (x) => x.toldMs);
    console.log(`polling every ${POLL}s (peer): all told ${bq.toldMs.toFixed(0)} ms after signing, ${bq.told}/${N}; ${bq.requestsPerSecond.toFixed(0)} requests/s while nothing changes`);
    if (push.length) console.log(`ratio (time to all told, push/poll): ${(best(push, (x) => x.toldMs).toldMs / bq.toldMs).toFixed(3)}`);
  }
  console.log(`load average ${load()} (1, 5, 15 min)`);
} finally {
  await gw.stop();
}
