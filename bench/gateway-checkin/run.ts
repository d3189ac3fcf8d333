/**
 * Check-in benchmark: simulated devices (each its own client certificate)
 * poll timestamp.json and post an event against `gateway serve` (sqlite,
 * database seeded with many devices), kept alive and with a new TLS
 * connection per request. Same load, same run, against three "hello" servers
 * that show where the time goes: the gateway's own transport (gateway/transport/)
 * with a trivial handler, the previous node:tls + node:http transport, and a bare
 * Bun.serve with mTLS. Servers, load generator and this driver are separate processes.
 *
 * Usage: bun bench/gateway-checkin/run.ts [--devices 1000000] [--certs 10000] [--clients 32[,256]] [--seconds 10] [--db sqlite|postgres|postgres://...] [--pg-durable] [--modes keepalive,newconn,poll] [--rounds 3] [--servers gateway,transport,node,bun] [--baseline DIR] [--profile DIR]
 * (each server is run --rounds times, servers alternating, `sync` before each run, and its best round counts: the machine is shared)
 * (--db postgres starts a private PostgreSQL cluster for the run, with fsync off like the tests' unless
 * --pg-durable; a postgres:// URL must name an empty database: the gateway is bound to this run's CA).
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { benchArgs } from "../_args.ts";
import { openDataDir } from "../../gateway/data-dir.ts";
import { openStore } from "../../gateway/store/open.ts";
import { startPostgres } from "../../test/harness/postgres.ts";
import { issueDevices, seedFillerDevices } from "../_seed.ts";
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
    servers: { type: "string", default: "gateway,transport,bun" },
    /** Another checkout (e.g. `git archive` of an older commit): its `gateway serve` runs too, on the same database, as "gateway (baseline)". */
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
const log = (s: string) => process.stderr.write(s + "\n");
const children: ReturnType<typeof Bun.spawn>[] = [];
let stopPostgres: (() => Promise<void>) | undefined;
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
  if (!values.db) await seedFillerDevices(data.dbPath, SEEDED);
  const store = await openStore(values.db ?? data.dbPath);
  if (values.db) await seedFillerDevices(values.db, SEEDED);
  const devices = await issueDevices(store, data.ca, CERTS, log);
  const seededCount = await store.countDevices();
  await store.close();
  log(`seeded ${seededCount} devices in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  // 2. Servers, each in its own process.
  const profile = values.profile ? ["--cpu-prof-md", `--cpu-prof-dir=${values.profile}`] : [];
  const gateway = async (root: string, extra: string[] = []) => {
    const cmd = [bun, ...extra, join(root, "gateway/main.ts"), "serve", "--data", dir, "--listen", "127.0.0.1:0", "--max-connections", String(CERTS * 2 + 1000)];
    const p = Bun.spawn([...cmd, ...(values.db ? ["--db", values.db] : [])], { stderr: "pipe", stdout: "ignore" });
    children.push(p);
    return [await waitLine(p, /gateway listening on (https:\/\/\S+)/), p.pid] as const;
  };
  const [gwUrl, gwPid] = await gateway(join(here, "../.."), profile);
  const helloCfg = join(dir, "hello.json");
  await writeFile(helloCfg, JSON.stringify({ cert: data.serverCertPem, key: data.serverKeyPem, ca: data.ca.certPem }));
  const wanted = new Set(values.servers!.split(","));
  const helloServer = async (file: string) => {
    const p = Bun.spawn([bun, join(here, file), helloCfg], { stderr: "pipe", stdout: "ignore" });
    children.push(p);
    return [await waitLine(p, /hello listening on (https:\/\/\S+)/), p.pid] as const;
  };
  /** Name, URL and process id of each server. */
  const servers: [string, string, number][] = [["gateway", gwUrl, gwPid]];
  if (values.baseline) servers.push(["gateway (baseline)", ...(await gateway(values.baseline))]);
  if (wanted.has("transport")) servers.push(["transport hello", ...(await helloServer("hello-transport.ts"))]);
  if (wanted.has("node")) servers.push(["node:http hello", ...(await helloServer("hello-node-http.ts"))]);
  servers.push(["Bun.serve hello", ...(await helloServer("hello.ts"))]);

  // 3. Load, one run at a time.
  /** CPU seconds (user + system) a process has used so far. */
  const cpuSeconds = async (pid: number) => {
    const f = (await Bun.file(`/proc/${pid}/stat`).text()).split(") ")[1]!.split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  };
  const loadAverage = async () => (await Bun.file("/proc/loadavg").text()).split(" ")[0]!;
  async function load(url: string, pid: number, mode: "keepalive" | "newconn" | "poll" | "newconn-poll", clients: number, seconds = SECONDS) {
    const cfg = join(dir, `load-${mode}.json`);
    await writeFile(cfg, JSON.stringify({ url, ca: data.ca.certPem, devices, mode, seconds, concurrency: clients }));
    Bun.spawnSync(["sync"]); // the previous run's writes do not land on this one
    const p = Bun.spawn([bun, join(here, "load.ts"), cfg], { stdout: "pipe", stderr: "inherit" });
    // The server's CPU over the timed part (kept-alive runs first connect every device, untimed).
    let cpu0 = await cpuSeconds(pid);
    const t0 = performance.now();
    let timedFrom = t0;
    const lines = p.stdout.pipeThrough(new TextDecoderStream());
    let out = "";
    for await (const chunk of lines) {
      out += chunk;
      if (timedFrom === t0 && out.includes("\n")) {
        // load.ts prints "started" when the clock starts.
        cpu0 = await cpuSeconds(pid);
        timedFrom = performance.now();
      }
    }
    const cpu = ((await cpuSeconds(pid)) - cpu0) / ((performance.now() - timedFrom) / 1000);
    await p.exited;
    const last = out.trim().split("\n").at(-1)!;
    return { ...(JSON.parse(last) as { requests: number; errors: number; rps: number; p50: number; p99: number; connections: number }), cpu, load: await loadAverage() };
  }
  const rows: string[] = [];
  log(`gateway ${gwUrl}; ${CLIENT_COUNTS.join(", ")} clients, ${CERTS} device certificates, ${SECONDS} s per run`);
  // A check-in is two requests (GET + POST) except in the poll modes.
  const fmt = (mode: string, r: Awaited<ReturnType<typeof load>>) =>
    `${r.rps.toFixed(0).padStart(6)} req/s${mode.endsWith("poll") ? "" : ` (${(r.rps / 2).toFixed(0)} check-ins/s)`} p50 ${r.p50.toFixed(2).padStart(6)} p99 ${r.p99.toFixed(2).padStart(6)} ms, server CPU ${(r.cpu * 100).toFixed(0)}%, load ${r.load}${r.errors ? ` (${r.errors} errors)` : ""}`;
  for (const clients of CLIENT_COUNTS)
    for (const mode of values.modes!.split(",") as ("keepalive" | "newconn" | "poll" | "newconn-poll")[]) {
      const results: Record<string, Awaited<ReturnType<typeof load>>> = {};
      // Warm-up (JIT, caches); kept-alive runs warm up anyway while connecting every device.
      if (mode.startsWith("newconn")) for (const [, url, pid] of servers) await load(url, pid, mode, clients, 2).catch(() => undefined);
      for (let round = 0; round < Number(values.rounds); round++) {
        for (const [name, url, pid] of servers) {
          const r = await load(url, pid, mode, clients);
          log(`${String(clients).padStart(4)} ${mode.padEnd(9)} ${name.padEnd(16)} ${fmt(mode, r)}`);
          if (!results[name] || r.rps > results[name]!.rps) results[name] = r;
        }
      }
      const bare = results["Bun.serve hello"]!.rps;
      for (const [name] of servers) rows.push(`${String(clients).padStart(4)} ${mode.padEnd(9)} ${name.padEnd(16)} ${fmt(mode, results[name]!)}  ${(results[name]!.rps / bare).toFixed(2)}x Bun.serve`);
    }
  console.log(
    `${values.db ? (stopPostgres ? `postgresql (private cluster: ${pgSettings})` : "postgresql") : "sqlite"}; devices in DB: ${seededCount}; ${CERTS} distinct device certificates; clients: ${CLIENT_COUNTS.join(", ")}; ${SECONDS} s per run; check-in = GET /repo/timestamp.json + POST /events (1 event); ` +
      `keepalive = one connection per device, all connected before the clock starts; newconn = a new TLS connection per request; poll = the GET alone, kept alive; load average ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")}`,
  );
  for (const r of rows) console.log(r);
} finally {
  for (const c of children) {
    c.kill("SIGTERM");
    await c.exited;
  }
  await stopPostgres?.();
  await rm(dir, { recursive: true, force: true });
}
