/**
 * Check-in benchmark: simulated devices (each its own client certificate)
 * poll timestamp.json and post an event against `gateway serve` (sqlite,
 * database seeded with many devices), kept alive and with a new TLS
 * connection per request. Same load, same run, against three "hello" servers
 * that show where the time goes: the gateway's own transport (gateway/transport/)
 * with a trivial handler, a bare Bun.listen TLS hello (what Bun.listen costs before our code),
 * the previous node:tls + node:http transport, and a bare Bun.serve with mTLS. Each line splits
 * the server's CPU by thread (event loop, SQLite writer, the rest) with the sleeps per request. Servers, load generator and this driver are separate processes.
 *
 * Behind HAProxy (`--servers ...,haproxy-gateway,haproxy-gateway-unix,haproxy-hello`): Debian's
 * haproxy with deploy/haproxy/gateway-plain.cfg (or the configs of `--haproxy-config`) terminates
 * the devices' TLS and forwards each request with its certificate in a header to
 * `gateway serve --proxy-listen` over TCP loopback or a unix socket, or to a plain Bun.serve hello
 * (that topology's ceiling), or to the gateway's plain listener with a "hello" handler (`haproxy-listener`:
 * the listener's own cost). HAProxy's CPU is counted apart from the server's.
 *
 * Usage: bun bench/gateway-checkin/run.ts [--devices 1000000] [--certs 10000] [--clients 32[,256]] [--seconds 10] [--db sqlite|postgres|postgres://...] [--pg-durable] [--modes keepalive,newconn,poll] [--rounds 3] [--servers gateway,transport,listen,node,bun,haproxy-gateway,haproxy-gateway-unix,haproxy-hello,haproxy-listener] [--haproxy-config gateway-plain.cfg[,/tmp/tuned.cfg]] [--baseline DIR] [--profile DIR]
 * (each server is run --rounds times, servers alternating and their order reversed every other round, `sync` before each run, and its best round counts: the machine is shared)
 * (--db postgres starts a private PostgreSQL cluster for the run, with fsync off like the tests' unless
 * --pg-durable; a postgres:// URL must name an empty database: the gateway is bound to this run's CA).
 */
import { cp, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { benchArgs } from "../_args.ts";
import { openDataDir } from "../../gateway/data-dir.ts";
import { startPostgres } from "../../test/harness/postgres.ts";
import { startHaproxy } from "../../test/harness/proxies.ts";
import { freePort } from "../../test/harness/tmp.ts";
import { cpuSeconds, threadCpu } from "../_proc.ts";
import { issueDevices, openSeededStore } from "../_seed.ts";
import { waitLine } from "../_spawn.ts";

const { values } = benchArgs({
  options: {
    devices: { type: "string", default: "1000000" },
    clients: { type: "string", default: "32" },
    certs: { type: "string", default: "10000" },
    seconds: { type: "string", default: "10" },
    db: { type: "string" },
    /** With --db postgres: the private cluster keeps fsync and synchronous_commit on (a commit waits for its WAL flush, as in production). */
    "pg-durable": { type: "boolean", default: false },
    modes: { type: "string", default: "keepalive,newconn,poll" },
    rounds: { type: "string", default: "3" },
    /** Sides: gateway (its own TLS transport), transport, listen, node, bun (hello servers; listen: a bare Bun.listen TLS hello, hello-listen.ts), haproxy-gateway (HAProxy, then the gateway's --proxy-listen on TCP loopback), haproxy-gateway-unix (the same on a unix socket), haproxy-hello (HAProxy, then a plain Bun.serve hello), haproxy-listener (HAProxy, then the gateway's plain listener answering hello). */
    servers: { type: "string", default: "gateway,transport,bun" },
    /** HAProxy configs for the haproxy-* sides, comma-separated: names under deploy/haproxy/ or paths with a "/" (a tuned copy); one side per config. */
    "haproxy-config": { type: "string", default: "gateway-plain.cfg" },
    /** Another checkout (e.g. `git archive` of an older commit): its `gateway serve` runs too, on a copy of the data dir (the same database with --db), as "gateway (baseline)", and behind HAProxy and as the listener hello when those sides are asked for. */
    baseline: { type: "string" },
    /** Write a CPU profile of `gateway serve` (bun --cpu-prof-md) into this directory. */
    profile: { type: "string" },
  },
});
const SEEDED = Number(values.devices);
/** Concurrent clients: a list ("32,256") runs every mode at each (the same servers and database). */
const CLIENT_COUNTS = values.clients!.split(",").map(Number);
const CLIENTS = Math.max(...CLIENT_COUNTS);
/** Distinct device certificates the clients cycle through (a fleet's cache misses, not 32 hot devices). */
const CERTS = Math.max(Number(values.certs), CLIENTS);
const SECONDS = Number(values.seconds);
const here = import.meta.dir;
const bun = process.execPath;

const dir = await mkdtemp(join(tmpdir(), "bench-checkin-"));
/** The baseline gateway's data dir: a copy of `dir` (one gateway per data dir: serve.lock). */
const baseDir = `${dir}-baseline`;
const log = (s: string) => process.stderr.write(s + "\n");
const children: ReturnType<typeof Bun.spawn>[] = [];
/** The HAProxy processes (started by the test harness, stopped by PID). */
const proxyStops: (() => Promise<void>)[] = [];
let stopPostgres: (() => Promise<void>) | undefined;
// Stopped by a signal (SIGTERM to this PID, or ^C): stop what it started and remove its directory, as at the end.
for (const signal of ["SIGTERM", "SIGINT"] as const)
  process.once(signal, async () => {
    for (const stop of proxyStops) await stop().catch(() => undefined);
    for (const c of children) c.kill("SIGTERM");
    await Promise.all(children.map((c) => c.exited));
    await stopPostgres?.();
    await rm(dir, { recursive: true, force: true });
    await rm(baseDir, { recursive: true, force: true });
    process.exit(130);
  });
/** The private cluster's durability settings, for the summary line. */
let pgSettings = "";

try {
  if (values.db === "sqlite") values.db = undefined;
  else if (values.db === "postgres") {
    // The test harness's cluster runs with fsync and synchronous_commit off unless asked to be durable:
    // without --pg-durable, POST /events does not wait for a disk flush, unlike SQLite here or a production PostgreSQL.
    const pg = await startPostgres({ durable: values["pg-durable"] });
    stopPostgres = () => pg.stop();
    const check = new Bun.SQL({ url: pg.url, max: 1 });
    const [settings] = (await check.unsafe("SELECT current_setting('fsync') AS fsync, current_setting('synchronous_commit') AS sync")) as { fsync: string; sync: string }[];
    pgSettings = `fsync ${settings!.fsync}, synchronous_commit ${settings!.sync}`;
    log(`private PostgreSQL: ${pgSettings}`);
    await check.close();
    values.db = await pg.createDatabase("bench_checkin");
  }
  // 1. Data dir, CA and schema; N filler devices seeded in bulk, CLIENTS real devices with certificates.
  const data = await openDataDir(dir, { hosts: ["127.0.0.1"] });
  const t0 = performance.now();
  const store = await openSeededStore(data, values.db, SEEDED);
  const devices = await issueDevices(store, data.ca, CERTS, log);
  const seededCount = await store.countDevices();
  await store.close();
  log(`seeded ${seededCount} devices in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  // 2. Servers, each in its own process.
  const wanted = new Set(values.servers!.split(","));
  const known = ["gateway", "transport", "listen", "node", "bun", "haproxy-gateway", "haproxy-gateway-unix", "haproxy-hello", "haproxy-listener"];
  for (const w of wanted) if (!known.includes(w)) throw new Error(`--servers: unknown side "${w}" (known: ${known.join(", ")})`);
  if ([...wanted].some((w) => w.startsWith("haproxy-"))) {
    // HAProxy takes its connection limit from the open-file limit (two files per connection): a
    // device past it waits in the accept queue, and the run would measure timeouts.
    const nofile = Number(/^Max open files\s+(\d+)/m.exec(await Bun.file("/proc/self/limits").text())?.[1] ?? Infinity);
    const maxconn = Math.floor((nofile - 26) / 2) - 32;
    if (CERTS > maxconn) throw new Error(`--certs ${CERTS}: under this process's open-file limit (${nofile}) HAProxy holds about ${maxconn} device connections; pass --certs ${Math.floor(maxconn / 100) * 100} or raise the limit (ulimit -n)`);
  }
  const profile = values.profile ? ["--cpu-prof-md", `--cpu-prof-dir=${values.profile}`] : [];
  /** The gateway's plain listener for HAProxy: a free loopback port, or a unix socket in the run's dir. */
  const tcpPlain = wanted.has("haproxy-gateway") ? `127.0.0.1:${await freePort()}` : undefined;
  const gateway = async (root: string, extra: string[] = [], proxyListen?: string, dataDir = dir) => {
    const cmd = [bun, ...extra, join(root, "gateway/main.ts"), "serve", "--data", dataDir, "--listen", "127.0.0.1:0", "--max-connections", String(CERTS * 2 + 1000)];
    // The forwarded certificate header HAProxy sets (deploy/haproxy/gateway-plain.cfg); trusting the
    // loopback leaves the TLS side as it is: a TLS peer's own certificate comes first.
    const proxy = proxyListen ? ["--proxy-listen", proxyListen, "--client-cert-header", "x-ssl-client-cert", ...(proxyListen.startsWith("unix:") ? [] : ["--trust-proxy", "127.0.0.1"])] : [];
    // On one PostgreSQL database the baseline is a second replica: it must serve the same registry storage.
    const shared = values.db ? ["--db", values.db, ...(dataDir !== dir ? ["--registry-dir", join(dir, "registry")] : [])] : [];
    const p = Bun.spawn([...cmd, ...proxy, ...shared], { stderr: "pipe", stdout: "ignore" });
    children.push(p);
    return [await waitLine(p, /gateway listening on (https:\/\/\S+)/), p.pid] as const;
  };
  // The baseline runs from its own copy of the data dir, taken before either gateway starts: the
  // same CA, keys and devices (on SQLite a copy of the database; --db is shared).
  if (values.baseline) await cp(dir, baseDir, { recursive: true });
  const [gwUrl, gwPid] = await gateway(join(here, "../.."), profile, tcpPlain);
  const helloCfg = join(dir, "hello.json");
  await writeFile(helloCfg, JSON.stringify({ cert: data.serverCertPem, key: data.serverKeyPem, ca: data.ca.certPem, dataDir: dir }));
  const helloServer = async (file: string, ...args: string[]) => helloFrom(here, file, ...args);
  const helloFrom = async (root: string, file: string, ...args: string[]) => {
    const p = Bun.spawn([bun, join(root, file), helloCfg, ...args], { stderr: "pipe", stdout: "ignore" });
    children.push(p);
    return [await waitLine(p, /hello listening on (\S+)/), p.pid] as const;
  };
  /** One side: its URL (what the load generator connects to) and the processes whose CPU it costs. */
  interface Side {
    name: string;
    url: string;
    /** The server behind (gateway or hello). */
    server: number;
    /** HAProxy in front, if any. */
    proxy?: number;
  }
  const servers: Side[] = [];
  if (wanted.has("gateway")) servers.push({ name: "gateway", url: gwUrl, server: gwPid });
  /** The baseline's gateway, with its plain listener on TCP loopback when haproxy-gateway is asked for. */
  const baseTcpPlain = values.baseline && wanted.has("haproxy-gateway") ? `127.0.0.1:${await freePort()}` : undefined;
  let basePid = 0;
  if (values.baseline) {
    const [url, pid] = await gateway(values.baseline, [], baseTcpPlain, baseDir);
    basePid = pid;
    servers.push({ name: "gateway (baseline)", url, server: pid });
  }
  if (wanted.has("transport")) {
    const [url, pid] = await helloServer("hello-transport.ts");
    servers.push({ name: "transport hello", url, server: pid });
  }
  if (wanted.has("listen")) {
    const [url, pid] = await helloServer("hello-listen.ts");
    servers.push({ name: "Bun.listen hello", url, server: pid });
  }
  if (wanted.has("node")) {
    const [url, pid] = await helloServer("hello-node-http.ts");
    servers.push({ name: "node:http hello", url, server: pid });
  }
  if (wanted.has("bun")) {
    const [url, pid] = await helloServer("hello.ts");
    servers.push({ name: "Bun.serve hello", url, server: pid });
  }
  // HAProxy sides: one HAProxy per config and backend, with this run's CA and server certificate.
  const DEPLOY_HAPROXY = resolve(here, "../../deploy/haproxy");
  const configs = values["haproxy-config"]!.split(",");
  /** Backends of the HAProxy sides: label, address as HAProxy's server line takes it, pid. */
  const backends: [string, string, number][] = [];
  if (tcpPlain) backends.push(["gw tcp", tcpPlain, gwPid]);
  if (baseTcpPlain) backends.push(["gw tcp (baseline)", baseTcpPlain, basePid]);
  for (const [root, tag] of [[join(here, "../.."), ""], ...(values.baseline ? [[values.baseline, " (baseline)"]] : [])] as [string, string][])
    if (wanted.has("haproxy-gateway-unix")) {
      const sock = join(dir, `gateway-plain${tag ? "-baseline" : ""}.sock`);
      const [, pid] = await gateway(root, tag ? [] : profile, `unix:${sock}`);
      backends.push([`gw unix${tag}`, sock, pid]);
    }
  if (wanted.has("haproxy-hello")) {
    const [url, pid] = await helloServer("hello.ts", `127.0.0.1:${await freePort()}`);
    backends.push(["hello", url.replace("http://", ""), pid]);
  }
  if (wanted.has("haproxy-listener"))
    for (const [root, tag] of [[here, ""], ...(values.baseline ? [[join(values.baseline, "bench/gateway-checkin"), " (baseline)"]] : [])] as [string, string][]) {
      const [url, pid] = await helloFrom(root, "hello.ts", `127.0.0.1:${await freePort()}`, "--listener");
      backends.push([`listener hello${tag}`, url.replace("http://", ""), pid]);
    }
  for (const c of configs)
    for (const [label, address, pid] of backends) {
      const file = c.includes("/") ? relative(DEPLOY_HAPROXY, resolve(c)) : c;
      const h = await startHaproxy({ file, dataDir: dir, replicas: [address] });
      proxyStops.push(() => h.stop());
      const tag = configs.length > 1 ? ` ${c.split("/").at(-1)!.replace(/\.cfg$/, "")}` : "";
      servers.push({ name: `HAProxy>${label}${tag}`, url: h.url, server: pid, proxy: h.pid });
    }
  if (servers.length === 0) throw new Error("--servers: no side to run");

  // 3. Load, one run at a time.
  /** CPU seconds (user + system, all threads) a process has used so far; 0 for none. */
  const cpuOf = (pid: number | undefined) => (pid === undefined ? 0 : cpuSeconds(pid));
  const loadAverage = async () => (await Bun.file("/proc/loadavg").text()).split(" ")[0]!;
  type Mode = "keepalive" | "newconn" | "poll" | "newconn-poll";
  async function load(side: Side, mode: Mode, clients: number, seconds = SECONDS) {
    const cfg = join(dir, `load-${mode}.json`);
    await writeFile(cfg, JSON.stringify({ url: side.url, ca: data.ca.certPem, devices, mode, seconds, concurrency: clients }));
    Bun.spawnSync(["sync"]); // the previous run's writes do not land on this one
    const p = Bun.spawn([bun, join(here, "load.ts"), cfg], { stdout: "pipe", stderr: "inherit" });
    // CPU over the timed part (kept-alive runs first connect every device, untimed): the server's and HAProxy's (the load generator reports its own).
    const sample = () => [cpuOf(side.server), cpuOf(side.proxy), threadCpu(side.server)] as const;
    let cpu0 = await sample();
    const t0 = performance.now();
    let timedFrom = t0;
    const lines = p.stdout.pipeThrough(new TextDecoderStream());
    let out = "";
    let cpu1 = cpu0;
    for await (const chunk of lines) {
      out += chunk;
      if (timedFrom === t0 && out.includes("\n")) {
        // load.ts prints "started" when the clock starts.
        cpu0 = await sample();
        timedFrom = performance.now();
      }
      // The result line: the load generator is done (its CPU read before it exits).
      if (out.trimEnd().endsWith("}")) cpu1 = await sample();
    }
    const elapsed = (performance.now() - timedFrom) / 1000;
    if (cpu1 === cpu0) cpu1 = await sample();
    await p.exited;
    const last = out.trim().split("\n").at(-1)!;
    const r = JSON.parse(last) as { requests: number; errors: number; rps: number; p50: number; p99: number; checkinP99?: number; connections: number; cpu: number; seconds: number };
    /** Share of a core over the timed part, and CPU µs per request. */
    const use = (seconds: number, over: number) => ({ share: seconds / over, us: (seconds * 1e6) / Math.max(1, r.requests) });
    return {
      ...r,
      server: use(cpu1[0]! - cpu0[0]!, elapsed),
      /** µs of CPU and sleeps per request, by thread group. */
      // (A thread that ended between the two samples takes its counts with it: never below zero.)
      // (The gateway's only Worker is its SQLite writer; a group with no thread is left out.)
      threads: (["main", "other", "worker"] as const)
        .filter((g) => cpu1[2][g].s > 0)
        .map((g) => ({
          group: g === "worker" ? "writer" : g,
          us: Math.max(0, ((cpu1[2][g].s - cpu0[2][g].s) * 1e6) / Math.max(1, r.requests)),
          sleeps: Math.max(0, (cpu1[2][g].sleeps - cpu0[2][g].sleeps) / Math.max(1, r.requests)),
        })),
      proxy: side.proxy === undefined ? undefined : use(cpu1[1]! - cpu0[1]!, elapsed),
      loadgen: use(r.cpu, r.seconds),
      load: await loadAverage(),
    };
  }
  const rows: string[] = [];
  log(`gateway ${gwUrl}; ${CLIENT_COUNTS.join(", ")} clients, ${CERTS} device certificates, ${SECONDS} s per run`);
  // A check-in is two requests (GET + POST) except in the poll modes.
  type Result = Awaited<ReturnType<typeof load>>;
  const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
  const fmt = (mode: string, r: Result) => {
    const cpu = r.proxy
      ? `CPU server ${pct(r.server.share)} + HAProxy ${pct(r.proxy.share)} = ${pct(r.server.share + r.proxy.share)}, µs/req ${r.server.us.toFixed(0)} + ${r.proxy.us.toFixed(0)} = ${(r.server.us + r.proxy.us).toFixed(0)}`
      : `CPU server ${pct(r.server.share)}, µs/req ${r.server.us.toFixed(0)} (${r.threads.map((t) => `${t.group} ${t.us.toFixed(0)}/${t.sleeps.toFixed(2)} sleeps`).join(", ")})`;
    return `${r.rps.toFixed(0).padStart(6)} req/s${mode.endsWith("poll") ? "" : ` (${(r.rps / 2).toFixed(0)} check-ins/s)`} p50 ${r.p50.toFixed(2).padStart(6)} p99 ${r.p99.toFixed(2).padStart(6)} ms${r.checkinP99 === undefined ? "" : ` (check-in p99 ${r.checkinP99.toFixed(2)} ms)`}, ${cpu}, load gen ${pct(r.loadgen.share)} ${r.loadgen.us.toFixed(0)} µs/req, load ${r.load}${r.errors ? ` (${r.errors} errors)` : ""}`;
  };
  const width = Math.max(...servers.map((s) => s.name.length));
  for (const clients of CLIENT_COUNTS)
    for (const mode of values.modes!.split(",") as Mode[]) {
      const results: Record<string, Result> = {};
      // Warm-up (JIT, caches); kept-alive runs warm up anyway while connecting every device. 6 s, not
      // 2: the gateway's code was still being compiled well into the first timed round (about 600
      // JIT compiles in the first 6 s of new-connection load, 21 in the next 6 s), its JIT thread
      // adding 10-50 µs per request that a long-running server does not pay.
      if (mode.startsWith("newconn")) for (const side of servers) await load(side, mode, clients, 6).catch(() => undefined);
      for (let round = 0; round < Number(values.rounds); round++) {
        // Sides alternate their order round by round, so none always runs first (or after the same one).
        for (const side of round % 2 ? [...servers].reverse() : servers) {
          const r = await load(side, mode, clients);
          log(`${String(clients).padStart(4)} ${mode.padEnd(9)} ${side.name.padEnd(width)} ${fmt(mode, r)}`);
          if (!results[side.name] || r.rps > results[side.name]!.rps) results[side.name] = r;
        }
      }
      const bare = results["Bun.serve hello"]?.rps;
      for (const { name } of servers)
        rows.push(`${String(clients).padStart(4)} ${mode.padEnd(9)} ${name.padEnd(width)} ${fmt(mode, results[name]!)}${bare ? `  ${(results[name]!.rps / bare).toFixed(2)}x Bun.serve` : ""}`);
    }
  console.log(
    `${values.db ? (stopPostgres ? `postgresql (private cluster: ${pgSettings})` : "postgresql") : "sqlite"}; devices in DB: ${seededCount}; ${CERTS} distinct device certificates; clients: ${CLIENT_COUNTS.join(", ")}; ${SECONDS} s per run; check-in = GET /repo/timestamp.json + POST /events (1 event); ` +
      `keepalive = one connection per device, all connected before the clock starts; newconn = a new TLS connection per request; poll = the GET alone, kept alive; load average ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")}`,
  );
  for (const r of rows) console.log(r);
} finally {
  for (const stop of proxyStops) await stop();
  for (const c of children) {
    c.kill("SIGTERM");
    await c.exited;
  }
  await stopPostgres?.();
  await rm(dir, { recursive: true, force: true });
  await rm(baseDir, { recursive: true, force: true });
}
