/**
 * Replicas benchmark: check-ins/s through HAProxy (the configs in deploy/haproxy/) in front of 1, 2
 * and 3 `gateway serve` replicas on one PostgreSQL, and one replica without HAProxy, all in the
 * same run. The replicas share a copy of one data dir (CA, TUF keys) and one --registry-dir, as an operator would set them up.
 *
 * A check-in is GET /repo/timestamp.json then POST /events (one event), from simulated devices
 * with their own certificates, each with its connection kept alive (bench/gateway-checkin/load.ts).
 * Sides alternate in order between rounds, `sync` runs between sides, and each side's best of
 * --rounds counts: the machine is shared. On a 2-core machine this shows HAProxy's overhead, not
 * scaling (every replica and HAProxy share the same two cores).
 *
 * Several --haproxy-config files (comma-separated) make one side per config and replica count, so
 * a tuning is compared with the shipped config in the same run. By default the three shipped
 * configs run: gateway.cfg (HAProxy terminates TLS, HTTPS to the replicas), gateway-plain.cfg
 * (plain HTTP to each replica's `--proxy-listen` port) and gateway-tcp.cfg (`mode tcp`: the device's
 * TLS bytes go through to the replicas' TLS port). A config in `mode tcp` gets the TLS ports, any
 * other config whose server line has no `ssl` the plain ports. Each side also reports where the
 * CPU went over its timed part: HAProxy's, the replicas' and the load generator's CPU time per
 * check-in request (ms), the load average when it ended, and how the requests spread over the
 * replicas (each replica's device requests in /metrics, before and after the side, and the TCP
 * connections open to it when the clock started). A second line per side splits the CPU and
 * context switches per request by process (each replica, every PostgreSQL process, HAProxy, the
 * load generator) and gives PostgreSQL's transactions, reads and rows written per request and each
 * replica's PostgreSQL connections; an idle measurement before the sides gives the same per
 * second with no device checking in (the replicas' background work).
 *
 * Usage: bun bench/replicas/run.ts [--certs 2000] [--clients 32] [--seconds 6] [--rounds 3] [--max-replicas 3] [--idle-seconds 10]
 *          [--replicas 1,2,3] [--haproxy-config gateway.cfg,gateway-plain.cfg,gateway-tcp.cfg[,other.cfg...]]
 */
import { cpSync, readFileSync } from "node:fs";
import { readdir, readlink, writeFile } from "node:fs/promises";
import { basename, join, relative, resolve } from "node:path";
import { SQL } from "bun";
import { benchArgs } from "../_args.ts";
import { openDataDir } from "../../gateway/data-dir.ts";
import { signDeviceCsr } from "../../gateway/pki/ca.ts";
import { openStore } from "../../gateway/store/open.ts";
import { startGateway, type GatewayHandle } from "../../test/harness/gateway.ts";
import { startPostgres } from "../../test/harness/postgres.ts";
import { startHaproxy, type ProxyHandle } from "../../test/harness/proxies.ts";
import { freePort, tempDir } from "../../test/harness/tmp.ts";
import { makeDeviceCsr } from "../../test/gateway/_device.ts";

const { values } = benchArgs({
  options: {
    certs: { type: "string", default: "2000" },
    clients: { type: "string", default: "32" },
    seconds: { type: "string", default: "6" },
    rounds: { type: "string", default: "3" },
    "max-replicas": { type: "string", default: "3" },
    /** HAProxy sides with these replica counts (default 1 to --max-replicas). */
    replicas: { type: "string" },
    /** HAProxy configs, comma-separated: names under deploy/haproxy/ or paths with a "/" (to compare a tuning). */
    "haproxy-config": { type: "string", default: "gateway.cfg,gateway-plain.cfg,gateway-tcp.cfg" },
    /** Seconds of the idle measurement before the sides (every replica's background work alone). */
    "idle-seconds": { type: "string", default: "10" },
  },
});
const CERTS = Number(values.certs);
const CLIENTS = Number(values.clients);
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const MAX = Number(values["max-replicas"]);
const COUNTS = values.replicas ? values.replicas.split(",").map(Number) : Array.from({ length: MAX }, (_, i) => i + 1);
const CONFIGS = values["haproxy-config"].split(",");
const IDLE_SECONDS = Number(values["idle-seconds"]);
for (const n of COUNTS) if (!(n >= 1 && n <= MAX)) throw new Error(`--replicas: ${n} is not between 1 and --max-replicas ${MAX}`);
/** A config's path as startHaproxy takes it: relative to deploy/haproxy/. */
const DEPLOY_HAPROXY = resolve(import.meta.dir, "../../deploy/haproxy");
const configFile = (c: string) => (c.includes("/") ? relative(DEPLOY_HAPROXY, resolve(c)) : c);
/** A config's lines without comments. */
const configText = (c: string) => readFileSync(resolve(DEPLOY_HAPROXY, configFile(c)), "utf8").replace(/#.*$/gm, "");
/** A config in `mode tcp` passes the device's TLS through: its replicas are their TLS ports. */
const tcpMode = (c: string) => /^\s*mode\s+tcp\b/m.test(configText(c));
/** A config whose backend talks plain HTTP (not TCP mode, no `ssl` on its server line): its replicas are the --proxy-listen ports. */
const plainHop = (c: string) => !tcpMode(c) && !/^\s*server\s.*\sssl\b/m.test(configText(c));
/** The loopback address the proxies that terminate TLS connect to the replicas from (their --trust-proxy). */
const PROXY_SOURCE = "127.0.0.2";
const LABELS: Record<string, string> = { "gateway.cfg": "HAProxy TLS hop", "gateway-plain.cfg": "HAProxy plain hop", "gateway-tcp.cfg": "HAProxy TCP mode" };
const log = (s: string) => process.stderr.write(s + "\n");
const stops: (() => Promise<void>)[] = [];

interface LoadResult {
  requests: number;
  errors: number;
  rps: number;
  p50: number;
  p99: number;
  /** p99 of a check-in, its GET and POST together (ms). */
  checkinP99: number;
  /** CPU ms per request over the timed part: HAProxy's, the replicas' (all of them), the load generator's. */
  cpu: { haproxy: number; replicas: number; load: number };
  /** 1-minute load average when the side ended. */
  loadavg: string;
  /** Device requests each replica behind the side answered while it ran (connecting check-in included). */
  spread: number[];
  /** Connections open to each replica behind the side when the clock started (HAProxy's, or the devices' in TCP mode). */
  conns: number[];
  split: Split;
}

interface Use {
  cpu: number;
  ctx: number;
}
interface PgCounters {
  xacts: number;
  device_reads: number;
  tuf_reads: number;
  reads: number;
  rows_written: number;
}
interface Snapshot {
  at: number;
  haproxy: Use;
  load: Use;
  pg: Use;
  perReplica: Use[];
  counters: PgCounters;
  pgConns: number[];
}
/** Where a side's work went, per request: each process group's CPU ms and context switches, PostgreSQL's counters. */
interface Split {
  haproxy: Use;
  load: Use;
  pg: Use;
  replicas: Use;
  perReplica: Use[];
  counters: PgCounters;
  /** Each replica's PostgreSQL connections when the side ended. */
  pgConns: number[];
}

/** CPU seconds (user + system) a process has used so far, and its context switches over all its threads (NaN once it is gone). */
async function usage(pid: number): Promise<{ cpu: number; ctx: number }> {
  const stat = await Bun.file(`/proc/${pid}/stat`).text().catch(() => undefined);
  if (!stat) return { cpu: NaN, ctx: NaN };
  const f = stat.split(") ")[1]!.split(" ");
  let ctx = 0;
  for (const t of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    const status = await Bun.file(`/proc/${pid}/task/${t}/status`).text().catch(() => "");
    for (const m of status.matchAll(/^(?:non)?voluntary_ctxt_switches:\s+(\d+)$/gm)) ctx += Number(m[1]);
  }
  return { cpu: (Number(f[11]) + Number(f[12])) / 100, ctx };
}
/** The processes' usage added up; `skipGone` leaves out one that exited meanwhile (a PostgreSQL backend), else the sum is NaN. */
const sum = async (pids: number[], skipGone = false) =>
  (await Promise.all(pids.map(usage)))
    .filter((u) => !skipGone || !Number.isNaN(u.cpu))
    .reduce((a, b) => ({ cpu: a.cpu + b.cpu, ctx: a.ctx + b.ctx }), { cpu: 0, ctx: 0 });

/** A process and its children (PostgreSQL's postmaster and its backends), read from /proc now: backends come and go. */
async function withChildren(pid: number): Promise<number[]> {
  const kids: number[] = [];
  for (const d of await readdir("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    const stat = await Bun.file(`/proc/${d}/stat`).text().catch(() => "");
    if (Number(stat.split(") ")[1]?.split(" ")[1]) === pid) kids.push(Number(d));
  }
  return [pid, ...kids];
}

/** How many TCP connections a process holds to `port` (its PostgreSQL pool), by its sockets' inodes in /proc/net/tcp. */
async function connectionsTo(pid: number, port: number): Promise<number> {
  const inodes = new Set<string>();
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
    const m = /^socket:\[(\d+)\]$/.exec(await readlink(`/proc/${pid}/fd/${fd}`).catch(() => ""));
    if (m) inodes.add(m[1]!);
  }
  let n = 0;
  for (const line of (await Bun.file("/proc/net/tcp").text()).split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[3] === "01" && parseInt(f[2]?.split(":")[1] ?? "", 16) === port && inodes.has(f[9]!)) n++;
  }
  return n;
}

/** Requests a replica has answered so far, by its /metrics, leaving out HAProxy's health checks and the scrapes. */
async function answered(r: GatewayHandle): Promise<number> {
  const text = await (await r.adminFetch("/metrics")).text();
  let n = 0;
  for (const m of text.matchAll(/^gateway_requests_total\{route="([^"]*)",status="\d+"\} (\d+)$/gm)) if (m[1] !== "/healthz" && m[1] !== "/metrics") n += Number(m[2]);
  return n;
}

/** Established TCP connections to each local port, from /proc/net/tcp (read without asking the replicas anything). */
async function established(ports: number[]): Promise<number[]> {
  const counts = new Map(ports.map((p) => [p, 0]));
  for (const line of (await Bun.file("/proc/net/tcp").text()).split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    const port = parseInt(f[1]?.split(":")[1] ?? "", 16);
    if (f[3] === "01" && counts.has(port)) counts.set(port, counts.get(port)! + 1);
  }
  return ports.map((p) => counts.get(p)!);
}

try {
  const pg = await startPostgres();
  stops.push(() => pg.stop());
  const db = await pg.createDatabase("bench_replicas");
  const registryDir = join(await tempDir("bench-registry-"), "registry");
  // The proxies that terminate TLS connect from 127.0.0.2, the one trusted address, and those on the
  // TLS hop present the proxy certificate the harness issues them (without it a replica ignores
  // their header: listen.ts); HAProxy in TCP mode passes the devices' TLS through from 127.0.0.1, not trusted.
  const args = ["--registry-dir", registryDir, "--trust-proxy", PROXY_SOURCE, "--client-cert-header", "x-ssl-client-cert", "--max-connections", String(CERTS * 2 + 1000)];
  /** Each replica's plain-HTTP port for the trusted proxy (--proxy-listen), beside its TLS port. */
  const plainPorts: string[] = [];
  const withPlain = async () => {
    plainPorts.push(`127.0.0.1:${await freePort()}`);
    return [...args, "--proxy-listen", plainPorts.at(-1)!];
  };
  const replicas: GatewayHandle[] = [await startGateway({ db, args: await withPlain() })];
  stops.push(() => replicas[0]!.stop());
  for (let i = 1; i < MAX; i++) {
    const dataDir = join(await tempDir("bench-replica-"), "data");
    cpSync(replicas[0]!.dataDir, dataDir, { recursive: true, filter: (src) => !src.endsWith(".harness-port") && !src.endsWith("serve.json") });
    const r = await startGateway({ db, dataDir, args: await withPlain() });
    replicas.push(r);
    stops.push(() => r.stop());
  }
  log(`${MAX} replicas on PostgreSQL: ${replicas.map((r) => r.url).join(", ")}`);

  // Devices: certificates from the shared CA, rows in the shared database.
  const data = await openDataDir(replicas[0]!.dataDir, { hosts: ["127.0.0.1"] });
  const store = await openStore(db);
  const devices: { cert: string; key: string }[] = [];
  for (let i = 0; i < CERTS; i++) {
    if (i && i % 500 === 0) log(`issued ${i}/${CERTS} device certificates`);
    const k = await makeDeviceCsr();
    const issued = await signDeviceCsr(data.ca, k.csrPem, { uuid: k.uuid, factory: "main" });
    await store.putDevice({ uuid: k.uuid, name: `bench-${i}`, hardwareId: "amd64-linux", factory: "main", tags: ["main"], certSerial: issued.serial });
    devices.push({ cert: issued.certPem, key: k.keyPem });
  }
  await store.close();

  /** A side: its name, the URL devices use, and the HAProxy process in front (none for the bare replica). */
  /** A side's replicas, and the ports its devices' requests reach them on. */
  const portOf = (hostPort: string) => Number(hostPort.split(":").at(-1));
  const sides: { name: string; url: string; haproxy?: number; replicas: GatewayHandle[]; ports: number[] }[] = [
    { name: "1 replica, no HAProxy", url: replicas[0]!.url, replicas: replicas.slice(0, 1), ports: [replicas[0]!.port] },
  ];
  for (const c of CONFIGS)
    for (const n of COUNTS) {
      const backends = plainHop(c) ? plainPorts.slice(0, n) : replicas.slice(0, n).map((r) => r.host);
      const p: ProxyHandle = await startHaproxy({ file: configFile(c), dataDir: replicas[0]!.dataDir, replicas: backends, ...(tcpMode(c) ? {} : { source: PROXY_SOURCE }) });
      stops.push(() => p.stop());
      const label = `${LABELS[c] ?? (CONFIGS.length > 1 ? basename(c, ".cfg") : "HAProxy")} + `;
      sides.push({ name: `${label}${n} replica${n > 1 ? "s" : ""}`, url: p.url, haproxy: p.pid, replicas: replicas.slice(0, n), ports: backends.map(portOf) });
    }
  const width = Math.max(...sides.map((s) => s.name.length));

  /** PostgreSQL's own counters for the bench database: transactions, reads of the device and TUF tables, rows written. */
  const stats = new SQL({ url: db, max: 1 });
  stops.push(() => stats.close());
  async function pgCounters(): Promise<PgCounters> {
    const rows = (await stats.unsafe(
      `SELECT (SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database())::float8 AS xacts,
         coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)) FILTER (WHERE relname = 'devices'), 0)::float8 AS device_reads,
         coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)) FILTER (WHERE relname = 'tuf_metadata'), 0)::float8 AS tuf_reads,
         coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)), 0)::float8 AS reads,
         coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::float8 AS rows_written
       FROM pg_stat_user_tables`,
    )) as Record<keyof PgCounters, number>[];
    return { ...rows[0]! };
  }
  /** Every process's CPU and context switches, PostgreSQL's counters, and each replica's PostgreSQL connections, now. */
  async function snapshot(haproxy: number[], load: number[]): Promise<Snapshot> {
    const [h, l, pgu, perReplica, counters, pgConns] = await Promise.all([
      sum(haproxy),
      sum(load),
      withChildren(pg.pid).then((pids) => sum(pids, true)),
      Promise.all(replicas.map((r) => usage(r.pid))),
      pgCounters(),
      Promise.all(replicas.map((r) => connectionsTo(r.pid, pg.port))),
    ]);
    return { at: performance.now(), haproxy: h, load: l, pg: pgu, perReplica, counters, pgConns };
  }
  /** Per request (or per second when `requests` is 0): CPU ms and context switches of each process group, PostgreSQL's counters. */
  function delta(a: Snapshot, b: Snapshot, requests: number): Split {
    const n = requests || (b.at - a.at) / 1000;
    const d = (x: Use, y: Use) => ({ cpu: ((y.cpu - x.cpu) * 1000) / n, ctx: (y.ctx - x.ctx) / n });
    const replicaUse = b.perReplica.map((u, i) => d(a.perReplica[i]!, u));
    const counters = Object.fromEntries(Object.entries(b.counters).map(([k, v]) => [k, (v - a.counters[k as keyof PgCounters]) / n])) as unknown as PgCounters;
    return {
      haproxy: d(a.haproxy, b.haproxy),
      load: d(a.load, b.load),
      pg: d(a.pg, b.pg),
      perReplica: replicaUse,
      replicas: replicaUse.reduce((x, y) => ({ cpu: x.cpu + y.cpu, ctx: x.ctx + y.ctx }), { cpu: 0, ctx: 0 }),
      counters,
      pgConns: b.pgConns,
    };
  }
  /** "cpu ms (ctx switches)" of each group, PostgreSQL's transactions and reads, per request (or per second). */
  const fmtSplit = (x: Split) =>
    `CPU ms / ctx sw: haproxy ${x.haproxy.cpu.toFixed(3)}/${x.haproxy.ctx.toFixed(2)} replicas ${x.perReplica.map((u) => `${u.cpu.toFixed(3)}/${u.ctx.toFixed(2)}`).join(" ")} ` +
    `postgres ${x.pg.cpu.toFixed(3)}/${x.pg.ctx.toFixed(2)} load ${x.load.cpu.toFixed(3)}/${x.load.ctx.toFixed(2)}; ` +
    `PG xacts ${x.counters.xacts.toFixed(3)} reads ${x.counters.reads.toFixed(3)} (devices ${x.counters.device_reads.toFixed(3)}, tuf ${x.counters.tuf_reads.toFixed(3)}) rows written ${x.counters.rows_written.toFixed(3)}; ` +
    `PG conns ${x.pgConns.join("/")}`;

  // Idle: what the replicas cost with no device checking in (background work only), per second.
  await Bun.sleep(3000);
  const idle0 = await snapshot([], []);
  await Bun.sleep(IDLE_SECONDS * 1000);
  log(`idle ${IDLE_SECONDS} s, per second: ${fmtSplit(delta(idle0, await snapshot([], []), 0))}`);

  const dir = await tempDir("bench-replicas-load-");
  async function load(side: (typeof sides)[number]): Promise<LoadResult> {
    const cfg = join(dir, "load.json");
    await writeFile(cfg, JSON.stringify({ url: side.url, ca: replicas[0]!.caPem, devices, mode: "keepalive", seconds: SECONDS, concurrency: CLIENTS }));
    const answered0 = await Promise.all(side.replicas.map(answered));
    const p = Bun.spawn([process.execPath, join(import.meta.dir, "../gateway-checkin/load.ts"), cfg], { stdout: "pipe", stderr: "inherit" });
    const sample = () => snapshot(side.haproxy ? [side.haproxy] : [], [p.pid]);
    // load.ts prints "started" when the clock starts (after connecting every device), then its result.
    let s0 = await sample();
    let s1 = s0;
    let started = false;
    let conns: number[] = [];
    let ended = false;
    let out = "";
    for await (const chunk of p.stdout.pipeThrough(new TextDecoderStream())) {
      out += chunk;
      if (!started && out.includes("\n")) {
        started = true;
        s0 = await sample();
        conns = await established(side.ports);
      }
      // Read the load generator's CPU before it exits (its /proc entry goes with it).
      if (started && !ended && out.trim().split("\n").length > 1) {
        ended = true;
        s1 = await sample();
      }
    }
    await p.exited;
    const loadavg = (await Bun.file("/proc/loadavg").text()).split(" ")[0]!;
    const spread = (await Promise.all(side.replicas.map(answered))).map((n, i) => n - answered0[i]!);
    const r = JSON.parse(out.trim().split("\n").at(-1)!) as Omit<LoadResult, "cpu" | "loadavg" | "spread" | "conns" | "split">;
    const split = delta(s0, s1, r.requests);
    return { ...r, cpu: { haproxy: split.haproxy.cpu, replicas: split.replicas.cpu, load: split.load.cpu }, loadavg, spread, conns, split };
  }
  /** Each replica's share of the side's requests and of its connections, e.g. "34/33/33% (conns 667/667/667)" (nothing for one replica). */
  const shares = (r: LoadResult) => {
    const all = r.spread.reduce((a, b) => a + b, 0);
    return r.spread.length < 2 ? "" : `, spread ${r.spread.map((n) => ((100 * n) / Math.max(1, all)).toFixed(0)).join("/")}% (conns ${r.conns.join("/")})`;
  };
  const fmt = (r: LoadResult) =>
    `${r.rps.toFixed(0).padStart(6)} req/s (${(r.rps / 2).toFixed(0).padStart(5)} check-ins/s) p50 ${r.p50.toFixed(2).padStart(6)} p99 ${r.p99.toFixed(2).padStart(7)} ms (check-in p99 ${r.checkinP99.toFixed(2)}), ` +
    `CPU ms/req haproxy ${r.cpu.haproxy.toFixed(3)} replicas ${r.cpu.replicas.toFixed(3)} load ${r.cpu.load.toFixed(3)}, load avg ${r.loadavg}${shares(r)}${r.errors ? ` (${r.errors} ERRORS)` : ""}`;
  const best: Record<string, LoadResult> = {};
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 ? [...sides].reverse() : sides;
    for (const side of order) {
      Bun.spawnSync(["sync"]);
      const r = await load(side);
      log(`round ${round + 1} ${side.name.padEnd(width)} ${fmt(r)}`);
      log(`  per request: ${fmtSplit(r.split)}`);
      // A round with errors counts only if no round of this side was clean.
      const prev = best[side.name];
      if (!prev || (prev.errors > 0 && r.errors === 0) || ((prev.errors > 0) === (r.errors > 0) && r.rps > prev.rps)) best[side.name] = r;
    }
  }
  const base = best[sides[0]!.name]!.rps;
  console.log(
    `PostgreSQL, ${MAX} replicas, ${CERTS} device certificates, ${CLIENTS} clients kept alive, ${SECONDS} s per side, best of ${ROUNDS}; ` +
      `a check-in = GET /repo/timestamp.json + POST /events; HAProxy configs ${CONFIGS.join(", ")}; load average ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")}`,
  );
  for (const { name } of sides) {
    console.log(`${name.padEnd(width)} ${fmt(best[name]!)}  ${(best[name]!.rps / base).toFixed(2)}x one replica without HAProxy`);
    console.log(`${"".padEnd(width)}   per request: ${fmtSplit(best[name]!.split)}`);
  }
} finally {
  for (const stop of stops.reverse()) await stop().catch((e) => log(`stop failed: ${(e as Error).message}`));
}
