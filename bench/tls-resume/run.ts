/**
 * TLS session resumption benchmark: check-ins with a new TLS connection each, full handshake
 * against resumed, for `gateway serve` (sqlite, database seeded with many devices) and the bare
 * Bun.serve mTLS hello-world (bench/gateway-checkin/hello.ts), and between them the gateway's
 * transport answering "hello" (bench/gateway-checkin/hello-transport.ts: our TLS listener, no app),
 * in one run. Sides (server x mode)
 * alternate in order between rounds, `sync` runs between sides, each side's best round counts.
 * The gateway's own counters (/metrics gateway_tls_resumed_total) confirm what resumed.
 *
 * Usage: bun bench/tls-resume/run.ts [--devices 100000] [--certs 2000] [--clients 32] [--seconds 6] [--rounds 3] [--poll] [--servers gateway,transport,bun] [--modes full,resumed] [--profile DIR]
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { openDataDir } from "../../gateway/data-dir.ts";
import { issueDevices, openSeededStore } from "../_seed.ts";
import { waitLine } from "../_spawn.ts";

const HELP = `Usage: bun bench/tls-resume/run.ts [options]

Check-ins (GET /repo/timestamp.json + POST /events) with a new TLS connection each, full handshake
against resumed session, for gateway serve and a bare Bun.serve mTLS hello-world, in one run.

  --devices N   filler devices seeded in the database (default 100000)
  --certs N     devices with their own certificate the clients check in as (default 2000)
  --clients N   concurrent check-ins (default 32)
  --seconds N   length of each timed run (default 6)
  --rounds N    rounds; sides alternate in order, best round counts (default 3)
  --poll        a check-in is the GET alone (a poll that finds nothing new)
  --servers L   any of gateway,transport,bun (default all; Bun.serve hello always runs)
  --modes L     full,resumed (default both)
  --profile DIR write a CPU profile of gateway serve (bun --cpu-prof-md) into DIR
  --help        this text
`;

const { values } = parseArgs({
  options: {
    devices: { type: "string", default: "100000" },
    certs: { type: "string", default: "2000" },
    clients: { type: "string", default: "32" },
    seconds: { type: "string", default: "6" },
    rounds: { type: "string", default: "3" },
    poll: { type: "boolean", default: false },
    servers: { type: "string", default: "gateway,transport,bun" },
    modes: { type: "string", default: "full,resumed" },
    profile: { type: "string" },
    help: { type: "boolean" },
  },
});
if (values.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
const num = (name: "devices" | "certs" | "clients" | "seconds" | "rounds") => {
  const v = Number(values[name]);
  if (!Number.isInteger(v) || v < 1) {
    process.stderr.write(`Invalid --${name} "${values[name]}": expected a positive integer\n${HELP}`);
    process.exit(2);
  }
  return v;
};
const [SEEDED, CERTS, CLIENTS, SECONDS, ROUNDS] = [num("devices"), num("certs"), num("clients"), num("seconds"), num("rounds")];
const here = import.meta.dir;
const bun = process.execPath;
const log = (s: string) => process.stderr.write(s + "\n");
const dir = await mkdtemp(join(tmpdir(), "bench-tls-resume-"));
const children: ReturnType<typeof Bun.spawn>[] = [];

interface LoadResult {
  checkins: number;
  errors: number;
  cps: number;
  p50: number;
  p99: number;
  resumed: number;
  serverCpuMs: number;
}
type Mode = "full" | "resumed";

try {
  const data = await openDataDir(dir, { hosts: ["127.0.0.1"] });
  const t0 = performance.now();
  const store = await openSeededStore(data, undefined, SEEDED);
  const devices = await issueDevices(store, data.ca, CERTS, log);
  const seeded = await store.countDevices();
  await store.close();
  log(`seeded ${seeded} devices in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const profile = values.profile ? ["--cpu-prof-md", `--cpu-prof-dir=${values.profile}`] : [];
  const gw = Bun.spawn([bun, ...profile, join(here, "../../gateway/main.ts"), "serve", "--data", dir, "--listen", "127.0.0.1:0", "--max-connections", String(CLIENTS * 4 + 1000)], {
    stderr: "pipe",
    stdout: "ignore",
  });
  children.push(gw);
  const gwUrl = await waitLine(gw, /gateway listening on (https:\/\/\S+)/);
  const helloCfg = join(dir, "hello.json");
  await writeFile(helloCfg, JSON.stringify({ cert: data.serverCertPem, key: data.serverKeyPem, ca: data.ca.certPem }));
  const helloServer = async (file: string): Promise<[string, number]> => {
    const p = Bun.spawn([bun, join(here, "../gateway-checkin", file), helloCfg], { stderr: "pipe", stdout: "ignore" });
    children.push(p);
    return [await waitLine(p, /hello listening on (https:\/\/\S+)/), p.pid];
  };
  const wanted = new Set(values.servers!.split(","));
  for (const w of wanted) if (!["gateway", "transport", "bun"].includes(w)) throw new Error(`Unknown server "${w}" in --servers: expected gateway, transport or bun`);
  const servers: [string, string, number][] = [];
  if (wanted.has("gateway")) servers.push(["gateway", gwUrl, gw.pid]);
  if (wanted.has("transport")) servers.push(["transport hello", ...(await helloServer("hello-transport.ts"))]);
  servers.push(["Bun.serve hello", ...(await helloServer("hello.ts"))]);

  /** The gateway's TLS counters from /metrics. */
  const gwCounters = async () => {
    const text = await (await fetch(`${gwUrl}/metrics`, { tls: { ca: data.ca.certPem } } as RequestInit)).text();
    const read = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, "m").exec(text)?.[1] ?? NaN);
    return { handshakes: read("gateway_tls_handshakes_total"), resumed: read("gateway_tls_resumed_total") };
  };

  async function load(url: string, pid: number, mode: Mode, seconds = SECONDS): Promise<LoadResult> {
    const cfg = join(dir, "load.json");
    await writeFile(cfg, JSON.stringify({ url, ca: data.ca.certPem, devices, mode, seconds, concurrency: CLIENTS, poll: values.poll, serverPid: pid }));
    const p = Bun.spawn([bun, join(here, "load.ts"), cfg], { stdout: "pipe", stderr: "inherit" });
    const out = await new Response(p.stdout).text();
    if ((await p.exited) !== 0) throw new Error(`load generator failed (exit ${p.exitCode})`);
    return JSON.parse(out.trim()) as LoadResult;
  }

  const sides: { server: string; url: string; pid: number; mode: Mode }[] = [];
  const modes = values.modes!.split(",") as Mode[];
  for (const m of modes) if (m !== "full" && m !== "resumed") throw new Error(`Unknown mode "${m}" in --modes: expected full or resumed`);
  for (const [server, url, pid] of servers) for (const mode of modes) sides.push({ server, url, pid, mode });
  const key = (s: { server: string; mode: Mode }) => `${s.server} ${s.mode}`;
  log(`${servers.map(([n, u]) => `${n} ${u}`).join(", ")}; ${CLIENTS} clients, ${CERTS} device certificates, ${SECONDS} s per run, ${ROUNDS} rounds`);
  for (const s of sides) await load(s.url, s.pid, s.mode, 2); // warm-up (JIT, caches)

  const best: Record<string, LoadResult & { serverResumed?: number }> = {};
  const cpuRuns: Record<string, number[]> = {};
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate the order: forwards, backwards, then rotated, so no side always runs first or last.
    const order = round % 2 ? [...sides].reverse() : sides.map((_, i) => sides[(i + round) % sides.length]!);
    for (const s of order) {
      Bun.spawnSync(["sync"]);
      const before = s.server === "gateway" ? await gwCounters() : undefined;
      const r = await load(s.url, s.pid, s.mode);
      const after = s.server === "gateway" ? await gwCounters() : undefined;
      // Server side, timed run and its untimed first pass together: the share of handshakes that resumed.
      const serverResumed = before && after ? (after.resumed - before.resumed) / Math.max(1, after.handshakes - before.handshakes) : undefined;
      log(
        `round ${round + 1} ${key(s).padEnd(24)} ${r.cps.toFixed(0).padStart(5)} check-ins/s p50 ${r.p50.toFixed(1)} p99 ${r.p99.toFixed(1)} ms, server CPU ${r.serverCpuMs.toFixed(2)} ms/check-in` +
          `, client saw ${r.resumed}/${r.checkins} resumed${serverResumed !== undefined ? `, gateway counted ${(serverResumed * 100).toFixed(0)}% resumed` : ""}${r.errors ? ` (${r.errors} errors)` : ""}`,
      );
      if (!best[key(s)] || r.cps > best[key(s)]!.cps) best[key(s)] = { ...r, serverResumed };
      (cpuRuns[key(s)] ??= []).push(r.serverCpuMs);
    }
  }

  const load1 = (await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ");
  console.log(
    `devices in DB: ${seeded}; ${CERTS} device certificates; ${CLIENTS} clients; ${SECONDS} s per run; best of ${ROUNDS}; ` +
      `check-in = ${values.poll ? "GET /repo/timestamp.json" : "GET /repo/timestamp.json + POST /events"} on one new TLS connection; load average ${load1}`,
  );
  /** Server CPU per check-in: the lowest of the rounds (the least disturbed by other jobs). */
  const cpuOf = (server: string, mode: Mode) => Math.min(...Object.values(cpuRuns[`${server} ${mode}`] ?? [NaN]));
  const row = (s: (typeof sides)[number]) => {
    const r = best[key(s)]!;
    return `${key(s).padEnd(24)} ${r.cps.toFixed(0).padStart(5)} check-ins/s  p50 ${r.p50.toFixed(1).padStart(6)}  p99 ${r.p99.toFixed(1).padStart(6)} ms  server CPU ${cpuOf(s.server, s.mode).toFixed(2)} ms/check-in  resumed ${((r.resumed / Math.max(1, r.checkins)) * 100).toFixed(0)}%${r.errors ? `  (${r.errors} errors)` : ""}`;
  };
  for (const s of sides) console.log(row(s));
  const cps = (server: string, mode: Mode) => best[`${server} ${mode}`]?.cps ?? NaN;
  const x = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
  const bare = "Bun.serve hello";
  for (const [server] of servers) {
    if (server === bare) continue;
    console.log(`${server} / ${bare}: full ${x(cps(server, "full"), cps(bare, "full"))}, resumed ${x(cps(server, "resumed"), cps(bare, "resumed"))}; ${server} resumed / ${bare} full ${x(cps(server, "resumed"), cps(bare, "full"))}`);
  }
  console.log(`resumed / full: ${servers.map(([server]) => `${server} ${x(cps(server, "resumed"), cps(server, "full"))}`).join(", ")}`);
  console.log(`server CPU per check-in, full / resumed: ${servers.map(([server]) => `${server} ${x(cpuOf(server, "full"), cpuOf(server, "resumed"))}`).join(", ")}`);
} finally {
  for (const c of children) {
    c.kill("SIGTERM");
    await c.exited;
  }
  await rm(dir, { recursive: true, force: true });
}
