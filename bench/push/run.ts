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
 * - proxied (ours behind HAProxy, the fleet's deployment): devices hold the same request through
 *   HAProxy run from deploy/haproxy/gateway-plain.cfg (it terminates device TLS and forwards the
 *   certificate in a header) to the gateway's plain `--proxy-listen` port (loopback TCP, or a unix
 *   socket with --proxy-hop unix). Memory is counted for the gateway and for HAProxy (the RSS of
 *   all its threads) and their sum; HAProxy is started afresh for each round (its pools keep what
 *   it freed, so a second round in the same process would hide what connections cost).
 *   `proxied-NAME` runs the same with one of the TUNINGS below added to HAProxy's global section,
 *   to compare a setting with the shipped config in the same run;
 * - nginx: the same through nginx run from deploy/nginx/gateway-plain.conf (its RSS: master and
 *   worker); `nginx-NAME` adds one of the NGINX_TUNINGS to its http block;
 * - tcp: HAProxy in TCP mode (deploy/haproxy/gateway-tcp.cfg) in front of the gateway's own TLS
 *   port: the gateway holds the TLS sockets, HAProxy only copies bytes;
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
 * Run: bun bench/push/run.ts [--devices 10000] [--rounds 3] [--poll-seconds 5]
 *        [--sides push,proxied,nginx,tcp,bare,poll,proxied-NAME,nginx-NAME...] [--proxy-hop tcp|unix]
 *        [--wait-seconds 55] [--linger 0]
 * --linger S keeps every device held S seconds before the publish, so waits run out (204) and
 * are asked again meanwhile; each side counts them and the connections cut, with the shortest
 * time a wait that ran out was held (a proxy whose timeouts are too short shows here).
 * Every side's figures come with the load average when it ended (the machine may be shared).
 *
 * @module
 */
import { createConnection } from "node:net";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { benchArgs } from "../_args.ts";
import type { RegistrationResponse } from "../../lib/api/index.ts";
import { EMPTY_SHA256 } from "../../lib/api/target.ts";
import { makeDeviceCsr } from "../../test/gateway/_device.ts";
import { startGateway, type GatewayHandle } from "../../test/harness/gateway.ts";
import { startHaproxy, startNginx, type ProxyHandle } from "../../test/harness/proxies.ts";
import { freePort, tempDir } from "../../test/harness/tmp.ts";

// Bun's fetch runs at most BUN_CONFIG_MAX_HTTP_REQUESTS (default 256) requests at once, read at
// start-up: holding thousands of long polls from one process needs it raised before we start.
// HAProxy holds two descriptors per proxied device (the device's and the gateway's side): with
// 10,000 devices that is above a common 20,000 open-file limit, and HAProxy refuses to start
// when it cannot raise its limit to what its maxconn needs. Raised here (root may), inherited by
// every process we start.
const asksHelp = process.argv.slice(2).some((a) => a === "--help" || a === "-h");
if (!process.env.BUN_CONFIG_MAX_HTTP_REQUESTS && !asksHelp) {
  const raised = Bun.spawnSync(["prlimit", "--pid", String(process.pid), "--nofile=1048576:1048576"]);
  if (raised.exitCode !== 0) process.stderr.write(`could not raise the open-file limit (prlimit: ${raised.stderr.toString().trim()}); proxied sides need about 2 per device plus 1,000 for HAProxy\n`);
  const child = Bun.spawn([process.execPath, ...process.argv.slice(1)], { env: { ...process.env, BUN_CONFIG_MAX_HTTP_REQUESTS: "65535" }, stdio: ["inherit", "inherit", "inherit"] });
  process.exit(await child.exited);
}

const { values } = benchArgs({
  options: { devices: { type: "string", default: "10000" }, rounds: { type: "string", default: "3" }, "poll-seconds": { type: "string", default: "5" }, sides: { type: "string", default: "push,proxied,bare,poll" }, "proxy-hop": { type: "string", default: "tcp" }, "wait-seconds": { type: "string", default: "55" }, linger: { type: "string", default: "0" } },
});
const N = Number(values.devices);
const ROUNDS = Number(values.rounds);
const POLL = Number(values["poll-seconds"]);
/** Each wait's timeout: fioup asks for 55 s (fioup/push.ts HOLD_SECONDS); the gateway takes up to 60. */
const WAIT = Number(values["wait-seconds"]);
/** Seconds to keep every device held before the publish (waits run out and are asked again meanwhile). */
const LINGER = Number(values.linger);
/** A bad option: says which and stops (no stack trace). */
function badOption(message: string): never {
  process.stderr.write(`${message}\nRun with --help for the options.\n`);
  process.exit(2);
}
if (!(WAIT >= 1 && WAIT <= 60 && LINGER >= 0)) badOption("--wait-seconds must be 1 to 60 and --linger 0 or more");
const BATCH = 250;
if (!(N > 1 && ROUNDS > 0 && POLL > 0)) badOption("--devices (at least 2), --rounds and --poll-seconds must be positive numbers");
/**
 * Settings tried on HAProxy's side of a held connection (added to the shipped config's global
 * section; side `proxied-NAME`). Measured (README): a held request keeps one HAProxy buffer
 * (tune.bufsize, 16 KB), its stream and the connections on both sides (about 4 KB more), and
 * outside HAProxy's pools about 25 KB of OpenSSL's per-connection state and malloc's overhead.
 */
const TUNINGS: Record<string, string[]> = {
  /** No server-side TLS session cache (a shared block of 20,000 sessions by default, filled as devices connect). */
  nocache: ["tune.ssl.cachesize 0"],
  /** HAProxy's default 16 KB buffers (the shipped config sets 8 KB since 2026-12-02; runs before that had 16 KB as `proxied`). */
  buf16k: ["tune.bufsize 16384"],
  /** No session cache, and TLS 1.3 only without session tickets (nothing about a session is kept for resumption). */
  lean: ["tune.ssl.cachesize 0", "ssl-default-bind-options ssl-min-ver TLSv1.3 no-tls-tickets"],
};
/**
 * Settings tried on nginx's side (added to deploy/nginx/gateway-plain.conf's http block; side
 * `nginx-NAME`).
 */
const NGINX_TUNINGS: Record<string, string[]> = {
  /** Smaller TLS write buffer (16 KB by default; only allocated while an answer is being sent). */
  buf4k: ["ssl_buffer_size 4k"],
  /** A request's memory pool grows from 1 KB blocks instead of 4 KB. */
  pool1k: ["request_pool_size 1k"],
};
type Side = string;
const SIDES = values.sides!.split(",") as Side[];
const isHaproxy = (s: Side) => s === "proxied" || (s.startsWith("proxied-") && s.slice(8) in TUNINGS);
const isNginx = (s: Side) => s === "nginx" || (s.startsWith("nginx-") && s.slice(6) in NGINX_TUNINGS);
/** HAProxy in TCP mode (deploy/haproxy/gateway-tcp.cfg): TLS passes through to the gateway's own port. */
const isTcp = (s: Side) => s === "tcp";
const isProxied = (s: Side) => isHaproxy(s) || isNginx(s) || isTcp(s);
/** The settings a proxied side adds to its shipped config. */
const tuningOf = (s: Side) => (s === "proxied" || s === "nginx" || s === "tcp" ? [] : isHaproxy(s) ? TUNINGS[s.slice(8)]! : NGINX_TUNINGS[s.slice(6)]!);
if (!SIDES.length || !SIDES.every((s) => s === "push" || s === "bare" || s === "poll" || isProxied(s)))
  badOption(`Invalid --sides "${values.sides}": expected a comma-separated list of push, proxied, nginx, tcp, bare, poll, proxied-NAME (NAME one of ${Object.keys(TUNINGS).join(", ")}) and nginx-NAME (NAME one of ${Object.keys(NGINX_TUNINGS).join(", ")})`);
const HOP = values["proxy-hop"];
if (HOP !== "tcp" && HOP !== "unix") badOption(`Invalid --proxy-hop "${HOP}": expected tcp or unix`);
const PROXIED = SIDES.some(isProxied);
/** 1, 5 and 15 minute load averages. */
const load = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
const log = (l: string) => process.stderr.write(`${l}\n`);

interface Dev {
  cert: string;
  key: string;
}

interface Probe {
  rss: number;
  /** RSS of the proxy in front (0 without one). */
  proxyRss: number;
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
  /** A proxy in front of it (its RSS is read at each probe too). */
  proxyPid?: number;
  /** Which proxy: HAProxy is asked to free what its pools keep before each reading. */
  proxyKind?: "haproxy" | "nginx";
  /** At most this many devices (what the proxy's open-file limit lets it hold). */
  maxDevices?: number;
  /** The proxy's stats socket (HAProxy's pools). */
  proxyStats?: string;
}
/** Resident memory of `pid` and its child processes (all threads share a process's), in bytes; 0 once gone. */
function rssOf(pid: number): number {
  let kb = 0;
  try {
    kb = Number(/^Rss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"))?.[1] ?? 0);
  } catch {
    return 0;
  }
  let children: number[] = [];
  try {
    children = readdirSync(`/proc/${pid}/task`).flatMap((t) => readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number));
  } catch {}
  return kb * 1024 + children.reduce((a, c) => a + rssOf(c), 0);
}
const probeOut = (name: string) => join(process.env.TMPDIR ?? "/tmp", `push-probe-${process.pid}-${name}.json`);

/** The process's memory after a full GC (bench/push/_probe.ts answers SIGUSR2). */
async function probe(h: Holder): Promise<Probe> {
  rmSync(h.probeOut, { force: true });
  process.kill(h.pid, "SIGUSR2");
  for (let i = 0; i < 600 && !existsSync(h.probeOut); i++) await Bun.sleep(100);
  let proxyRss = 0;
  if (h.proxyPid) {
    // (nginx keeps no pools of freed objects to give back: read as it is.)
    if (h.proxyKind === "haproxy") {
      // HAProxy's counterpart of the full GC: SIGQUIT makes it give back what its pools keep
    // unused (and malloc's free pages), so its RSS counts what the held connections use.
      process.kill(h.proxyPid, "SIGQUIT");
      await Bun.sleep(500);
    }
    proxyRss = rssOf(h.proxyPid);
  }
  return { ...(JSON.parse(readFileSync(h.probeOut, "utf8")) as Probe), proxyRss };
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
const DEPLOY_HAPROXY = join(import.meta.dir, "../../deploy/haproxy");
const DEPLOY_NGINX = join(import.meta.dir, "../../deploy/nginx");
// The gateway's plain port for HAProxy (deploy/haproxy/gateway-plain.cfg's @REPLICA_1@): loopback
// TCP from the trusted proxy, or a unix socket (trusted by who may open it).
const hopDir = PROXIED ? await tempDir("push-hop-") : "";
const hop = !PROXIED ? undefined : HOP === "unix" ? { listen: `unix:${join(hopDir, "proxy.sock")}`, server: join(hopDir, "proxy.sock") } : await freePort().then((p) => ({ listen: `127.0.0.1:${p}`, server: `127.0.0.1:${p}` }));
const proxyArgs = hop ? ["--proxy-listen", hop.listen, "--client-cert-header", "x-ssl-client-cert", ...(HOP === "tcp" ? ["--trust-proxy", "127.0.0.1"] : [])] : [];
// Every simulated device comes from 127.0.0.1: lift the per-address cap (meant for unauthenticated
// clients during their handshake) and the total cap, which a fleet on push must size to its devices.
const gw: GatewayHandle = await startGateway({
  command: [process.execPath, "--preload", PROBE, join(import.meta.dir, "../../gateway/main.ts")],
  env: { PUSH_PROBE_OUT: probeOut("gateway"), PUSH_PROBE_SNAPSHOT: process.env.PUSH_PROBE_SNAPSHOT },
  args: ["--max-connections", String(N * 2 + 1000), "--max-connections-per-address", String(N * 2 + 1000), ...proxyArgs],
});

/**
 * HAProxy needs two descriptors per device (its side and the gateway's) plus a few, and will not
 * start with a maxconn its open-file limit cannot carry. Where the hard limit cannot be raised
 * (a container without CAP_SYS_RESOURCE: 20,000 here), the proxied sides hold as many devices as it allows.
 */
const fileLimit = Number(/^Max open files\s+\S+\s+(\d+)/m.exec(readFileSync("/proc/self/limits", "utf8"))?.[1] ?? Infinity);
const PROXY_MAXCONN = Math.min(N + 1000, Math.floor((fileLimit - 40) / 2));
const PROXY_DEVICES = Math.min(N, PROXY_MAXCONN - 10);
if (PROXIED && PROXY_DEVICES < N) log(`open-file limit ${fileLimit}: HAProxy can carry ${PROXY_MAXCONN} connections, so proxied sides hold ${PROXY_DEVICES} of the ${N} devices`);

/**
 * HAProxy from deploy/haproxy/gateway-plain.cfg in front of the gateway's plain port, with the
 * global lines of `tuning` added, and `maxconn` raised for N devices as the config's comment
 * tells a large fleet to.
 */
async function startProxy(tuning: string[], config = "gateway-plain.cfg"): Promise<ProxyHandle & { stats: string }> {
  const dir = await tempDir("push-haproxy-");
  // Also a stats socket of the bench's own: `show pools` says how much of HAProxy's memory its pools hold.
  const stats = join(dir, "stats.sock");
  const text = readFileSync(join(DEPLOY_HAPROXY, config), "utf8")
    .replace(/^global\n/m, `global\n    maxconn ${PROXY_MAXCONN}\n    stats socket ${stats} mode 600\n`)
    // At the end of the global section, so a setting overrides the shipped config's own.
    .replace(/^defaults\n/m, `${tuning.map((l) => `    ${l}\n`).join("")}\ndefaults\n`);
  const file = join(dir, "haproxy.cfg");
  writeFileSync(file, text);
  // startHaproxy takes a path under deploy/haproxy/: a relative path from there to ours.
  return { ...(await startHaproxy({ file: relative(DEPLOY_HAPROXY, file), dataDir: gw.dataDir, replicas: [config === "gateway-tcp.cfg" ? gw.host : hop!.server] })), stats };
}

/**
 * nginx from deploy/nginx/gateway-plain.conf in front of the gateway's plain port, with the lines
 * of `tuning` added to its http block, and `worker_connections` raised for N devices (2 per
 * device: the device's and the gateway's side) as the config's comment tells a large fleet to.
 */
async function startNginxFront(tuning: string[]): Promise<ProxyHandle> {
  const dir = await tempDir("push-nginx-");
  const text = readFileSync(join(DEPLOY_NGINX, "gateway-plain.conf"), "utf8")
    .replace(/worker_connections \d+;/, `worker_connections ${PROXY_MAXCONN * 2};`)
    .replace(/^worker_rlimit_nofile \d+;/m, `worker_rlimit_nofile ${Math.min(fileLimit, PROXY_MAXCONN * 2 + 40)};`)
    .replace(/^http \{\n/m, `http {\n${tuning.map((l) => `    ${l};\n`).join("")}`);
  const file = join(dir, "nginx.conf");
  writeFileSync(file, text);
  return startNginx({ file: relative(DEPLOY_NGINX, file), dataDir: gw.dataDir, replicas: [hop!.server.startsWith("/") ? `unix:${hop!.server}` : hop!.server] });
}

/** One command on HAProxy's stats socket, its answer. */
function haproxyCommand(socket: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = "";
    const c = createConnection(socket, () => c.end(`${command}\n`));
    c.setEncoding("utf8");
    c.on("data", (d) => (out += d));
    c.on("end", () => resolve(out));
    c.on("error", reject);
  });
}
/** Bytes HAProxy's pools hold (`show pools`), and the pools that hold the most. */
async function haproxyPools(socket: string): Promise<{ bytes: number; pools: Map<string, number> }> {
  const text = await haproxyCommand(socket, "show pools");
  const pools = new Map<string, number>();
  for (const m of text.matchAll(/Pool (\S+) \((\d+) bytes\) : (\d+) allocated \((\d+) bytes\)/g)) pools.set(`${m[1]}(${m[2]})`, Number(m[4]));
  return { bytes: Number(/Total: \d+ pools, (\d+) bytes allocated/.exec(text)?.[1] ?? NaN), pools };
}
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
    // Retried: on a loaded machine the gateway's handshake deadline can cut a connection.
    const res = await retry(() => fetch(`${gw.url}/devices`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
      body: JSON.stringify({ name: `push-${i}`, uuid: k.uuid, csr: k.csrPem, "hardware-id": "amd64-linux" }),
      tls: { ca: gw.caPem },
    } as RequestInit));
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
    const idlePools = h.proxyStats ? await haproxyPools(h.proxyStats) : undefined;
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
    // Waits that ran to their timeout (204) and connections cut are counted, with the shortest
    // time a wait that ran out was held: through a proxy, every wait must run its whole timeout.
    let published = false;
    let expired = 0;
    let cuts = 0;
    let shortestExpiredS = Infinity;
    const leave = new AbortController();
    const hold = async (d: Dev): Promise<void> => {
      // A wait that runs out just as the publish comes is asked again once, as fioup does: the
      // new one is answered at once (the device is told late, which the time to all told shows).
      for (let cut = 0, late = 0; ; ) {
        const asked = performance.now();
        try {
          const r = await devFetch(h.url, d, `/repo/wait?after=${after}&timeout=${WAIT}`, leave.signal);
          await r.arrayBuffer();
          if (r.status === 204) {
            expired++;
            shortestExpiredS = Math.min(shortestExpiredS, (performance.now() - asked) / 1000);
            if (!published || late++ === 0) continue;
          }
          if (r.status === 200) { told++; lastTold = performance.now(); } else fail(`HTTP ${r.status}`);
        } catch (err) {
          if (leave.signal.aborted) return;
          cuts++;
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
    const n = Math.min(N, h.maxDevices ?? N);
    for (let start = 0; start < n; start += BATCH) {
      for (const d of devs.slice(start, Math.min(n, start + BATCH))) held.push(hold(d));
      const want = Math.min(n, start + BATCH) - failed;
      for (let i = 0; i < 200 && heldBy(h) < want; i++) await Bun.sleep(50);
      if (!mid && start + BATCH >= n / 2) {
        const n = heldBy(h);
        mid = { probe: await probe(h), held: n };
      }
    }
    // Waits that ran out while the rest connected are being asked again: let them settle (up to
    // 60 s) so the probe sees every device held. (On a loaded machine, where connecting them all
    // takes longer than a wait, such waves can still be under way: the summary counts the waits
    // that ran out, and a round with many has a time to all told that measures the wave.)
    for (let i = 0; i < 1200 && heldBy(h) < n - failed; i++) await Bun.sleep(50);
    const heldNow = heldBy(h);
    const all = await probe(h);
    let poolsMbPer1000: number | undefined;
    if (h.proxyStats) {
      const p = await haproxyPools(h.proxyStats);
      poolsMbPer1000 = ((p.bytes - idlePools!.bytes) / MB / heldNow) * 1000;
      const grew = [...p.pools].map(([k, v]) => [k, v - (idlePools!.pools.get(k) ?? 0)] as const).filter(([, d]) => d > 0).sort((a, b) => b[1] - a[1]);
      log(`HAProxy's pools: ${(p.bytes / MB).toFixed(1)} MB (${((p.bytes - idlePools!.bytes) / heldNow).toFixed(0)} bytes per held); grew per held: ${grew.slice(0, 12).map(([k, d]) => `${k} ${(d / heldNow).toFixed(0)}`).join(", ")}`);
    }
    log(`held ${heldNow}; grown: ${grown(idle, all)}; JS heap ${((all.heapSize - idle.heapSize) / MB).toFixed(1)} MB more, extra ${((all.extraMemorySize - idle.extraMemorySize) / MB).toFixed(1)} MB`);
    let publishMs = 0;
    let signedAt = 0;
    if (LINGER) {
      log(`holding ${LINGER} s before the publish`);
      await Bun.sleep(LINGER * 1000);
    }
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
      ...(h.proxyPid
        ? {
            proxyIdleRssMb: idle.proxyRss / MB,
            proxyHeldRssMb: all.proxyRss / MB,
            proxyMbPer1000: per1000(all.proxyRss - idle.proxyRss, heldNow),
            proxySlopeMbPer1000: per1000(all.proxyRss - mid!.probe.proxyRss, heldNow - mid!.held),
            proxyPoolsMbPer1000: poolsMbPer1000,
          }
        : {}),
      ...(isOurs ? { toldMs: lastTold - signedAt, publishMs, told } : {}),
      failed,
      expired,
      cuts,
      ...(expired ? { shortestExpiredS } : {}),
      load: load(),
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
    return { toldMs: lastTold - signedAt, told, requestsPerSecond: idleRps, load: load() };
  }

  type HoldResult = Awaited<ReturnType<typeof holdRound>>;
  const held = new Map<Side, HoldResult[]>();
  const polls: Awaited<ReturnType<typeof pollRound>>[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    for (const side of r % 2 === 0 ? SIDES : SIDES.toReversed()) {
      Bun.spawnSync(["sync"]);
      if (side === "poll") {
        polls.push(await pollRound());
        log(`round ${r + 1} poll: ${JSON.stringify(polls.at(-1))}`);
        continue;
      }
      let res: HoldResult;
      if (side === "push") res = await holdRound(ours, true);
      else if (side === "bare") res = await holdRound(bare!, false);
      else {
        const nginx = isNginx(side);
        const proxy: ProxyHandle & { stats?: string } = nginx ? await startNginxFront(tuningOf(side)) : await startProxy(tuningOf(side), isTcp(side) ? "gateway-tcp.cfg" : undefined);
        try {
          res = await holdRound({ ...ours, url: proxy.url, proxyPid: proxy.pid, proxyKind: nginx ? "nginx" : "haproxy", maxDevices: PROXY_DEVICES, proxyStats: proxy.stats }, true);
        } finally {
          await proxy.stop();
        }
      }
      held.set(side, [...(held.get(side) ?? []), res]);
      log(`round ${r + 1} ${side}: ${JSON.stringify(res)}`);
    }
  }
  const range = (xs: number[], digits = 1) => (xs.length ? `${Math.min(...xs).toFixed(digits)} to ${Math.max(...xs).toFixed(digits)}` : "-");
  const per = (xs: HoldResult[], f: (x: HoldResult) => number, g: (x: HoldResult) => number) =>
    `held-idle ${range(xs.map(f))}, slope N/2->N ${range(xs.map(g))}`;
  /** First round ("cold": the process's first N connections) apart from the others ("warm"); the load average when each ended. */
  const memory = (xs: HoldResult[], proxy: string) => {
    const [first, ...rest] = xs;
    const line = (x: HoldResult[]) => {
      let out = `${per(x, (y) => y.mbPer1000, (y) => y.slopeMbPer1000)}, JS heap ${range(x.map((y) => y.heapMbPer1000))}; idle ${range(x.map((y) => y.idleRssMb), 0)} MB, held ${range(x.map((y) => y.heldRssMb), 0)} MB`;
      if (x[0]!.proxyMbPer1000 !== undefined) {
        out += `\n      ${proxy}: ${per(x, (y) => y.proxyMbPer1000!, (y) => y.proxySlopeMbPer1000!)}${x[0]!.proxyPoolsMbPer1000 === undefined ? "" : `, of which its pools ${range(x.map((y) => y.proxyPoolsMbPer1000!))}`}; idle ${range(x.map((y) => y.proxyIdleRssMb!), 0)} MB, held ${range(x.map((y) => y.proxyHeldRssMb!), 0)} MB`;
        out += `\n      gateway + ${proxy}: ${per(x, (y) => y.mbPer1000 + y.proxyMbPer1000!, (y) => y.slopeMbPer1000 + y.proxySlopeMbPer1000!)}`;
      }
      return `${out}\n      load average at the end: ${x.map((y) => y.load).join("; ")}`;
    };
    return `  MB of RSS per 1,000 held, first round: gateway ${line([first!])}\n  later rounds: ${rest.length ? `gateway ${line(rest)}` : "(one round only)"}`;
  };
  for (const [side, xs] of held) {
    const least = Math.min(...xs.map((x) => x.held));
    const failed = xs.reduce((n, x) => n + x.failed, 0);
    const expired = xs.reduce((n, x) => n + x.expired, 0);
    const shortest = Math.min(...xs.map((x) => x.shortestExpiredS ?? Infinity));
    const waits = `; ${expired} waits ran out (204) and were asked again${expired ? ` (shortest held ${shortest.toFixed(1)} s of ${WAIT})` : ""}, ${xs.reduce((n, x) => n + x.cuts, 0)} connections cut`;
    if (side === "bare") console.log(`bare Bun.listen mTLS (floor): at least ${least} of ${N} held; ${failed} failed${waits}`);
    else {
      const config = isNginx(side) ? "nginx, deploy/nginx/gateway-plain.conf" : isTcp(side) ? "HAProxy in TCP mode, deploy/haproxy/gateway-tcp.cfg: TLS on the gateway" : "HAProxy, deploy/haproxy/gateway-plain.cfg";
      const name = side === "push" ? "push (ours, devices on the gateway's TLS port)" : `${side} (ours behind ${config}${tuningOf(side).length ? ` + ${tuningOf(side).join("; ")}` : ""}${isTcp(side) ? "" : `, ${HOP} hop`})`;
      const n = side === "push" ? N : PROXY_DEVICES;
      console.log(`${name}: at least ${least} of ${n} held${n < N ? ` (the proxy's open-file limit ${fileLimit} carries no more)` : ""}; all told ${range(xs.map((x) => x.toldMs! / 1000), 2)} s after signing (goal < 2 s); told ${xs.map((x) => x.told).join(", ")} of ${n}; ${failed} failed${waits}`);
    }
    console.log(memory(xs, isNginx(side) ? "nginx" : "HAProxy"));
  }
  const push = held.get("push");
  const bareXs = held.get("bare");
  if (push && bareXs) {
    // Round by round (the same round's two sides ran back to back, under the same load).
    const rounds = Math.min(push.length, bareXs.length);
    const m = (k: "mbPer1000" | "slopeMbPer1000") => Array.from({ length: rounds }, (_, i) => (push[i]![k] - bareXs[i]![k]).toFixed(1)).join(", ");
    console.log(`ours above the floor per 1,000 held, round by round: held-idle ${m("mbPer1000")} MB; slope ${m("slopeMbPer1000")} MB`);
  }
  if (polls.length) {
    const bq = polls.reduce((a, b) => (b.toldMs < a.toldMs ? b : a));
    console.log(`polling every ${POLL}s (peer): all told ${bq.toldMs.toFixed(0)} ms after signing, ${bq.told}/${N}; ${bq.requestsPerSecond.toFixed(0)} requests/s while nothing changes; load ${bq.load}`);
    if (push) console.log(`ratio (time to all told, best push/best poll): ${(Math.min(...push.map((x) => x.toldMs!)) / bq.toldMs).toFixed(3)}`);
  }
  console.log(`load average ${load()} (1, 5, 15 min)`);
} finally {
  bareProc?.kill();
  await gw.stop();
}
