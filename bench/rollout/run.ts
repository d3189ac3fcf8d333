/**
 * Rollout benchmark: a gateway database with 100,000 devices (bulk-seeded filler devices plus
 * `--certs` devices with real certificates), `gateway serve` in its own process, and:
 *
 * 1. the time to compute wave membership in process (the audience query through the store,
 *    then the order and the cut of every wave, gateway/rollouts/membership.ts);
 * 2. the time to create a rollout over all of them through the admin API (POST
 *    /admin/rollouts: audience, membership, one transaction, new signed views), and to
 *    release each further wave (POST /admin/rollouts/:id/advance: the wave, the views cache
 *    reloaded, the metadata re-signed);
 * 3. check-ins per second with and without an active rollout in the same run, from the
 *    check-in benchmark's load generator (bench/gateway-checkin/load.ts: raw TLS, one kept-alive
 *    connection per device, its own process): `--rounds` rounds, the order alternating
 *    (without/with, then with/without...), best round of each counts. "With" is a rollout of
 *    version 2 to every device at its first wave (1%): the first 1% of the devices see version 2
 *    annotated, the others have it hidden, and the rollout tick runs as in production.
 *
 * Usage: bun bench/rollout/run.ts [--devices 100000] [--certs 2000] [--clients 32] [--seconds 8]
 *   [--rounds 3] [--modes keepalive,poll] [--waves 1,10,50,100] [--db postgres://...]
 * (with --db: an empty database; the gateway is bound to this run's CA). Prints the figures on stdout.
 *
 * @module
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { benchArgs } from "../_args.ts";
import type { RolloutDetail } from "../../lib/api/admin.ts";
import { EMPTY_SHA256 } from "../../lib/api/target.ts";
import { openDataDir } from "../../gateway/data-dir.ts";
import { assignWaves } from "../../gateway/rollouts/membership.ts";
import { issueDevices, openSeededStore } from "../_seed.ts";
import { waitLine } from "../_spawn.ts";

const { values } = benchArgs({
  options: {
    devices: { type: "string", default: "100000" },
    certs: { type: "string", default: "2000" },
    clients: { type: "string", default: "32" },
    seconds: { type: "string", default: "8" },
    rounds: { type: "string", default: "3" },
    modes: { type: "string", default: "keepalive,poll" },
    waves: { type: "string", default: "1,10,50,100" },
    db: { type: "string" },
  },
});
const TOTAL = Number(values.devices);
const CERTS = Math.min(Number(values.certs), TOTAL);
const CLIENTS = Number(values.clients);
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const WAVES = values.waves!.split(",").map(Number);
const MODES = values.modes!.split(",") as ("keepalive" | "poll")[];
const bun = process.execPath;
const here = import.meta.dir;
const log = (s: string) => process.stderr.write(s + "\n");
const dir = await mkdtemp(join(tmpdir(), "bench-rollout-"));
let gwProc: ReturnType<typeof Bun.spawn> | undefined;

const ms = (t0: number) => performance.now() - t0;

try {
  // 1. The database: filler devices in bulk, CERTS devices with certificates, all tagged "main".
  const data = await openDataDir(dir, { hosts: ["127.0.0.1"] });
  const t0 = performance.now();
  const store = await openSeededStore(data, values.db, TOTAL - CERTS);
  const devices = await issueDevices(store, data.ca, CERTS, log);
  const count = await store.countDevices();
  log(`seeded ${count} devices in ${(ms(t0) / 1000).toFixed(1)} s`);

  // 2. Membership in process: the audience query, then order and cut (best of 3).
  let audienceMs = Infinity;
  let assignMs = Infinity;
  let members: { uuid: string; wave: number }[] = [];
  for (let i = 0; i < 3; i++) {
    const a0 = performance.now();
    const audience = await store.queryDevices({ tags: ["main"] });
    audienceMs = Math.min(audienceMs, ms(a0));
    const w0 = performance.now();
    members = assignWaves(audience, WAVES);
    assignMs = Math.min(assignMs, ms(w0));
  }
  const perWave = WAVES.map((_, k) => members.filter((m) => m.wave === k).length);
  await store.close();

  // 3. The gateway, and versions 1 and 2 published.
  gwProc = Bun.spawn(
    [bun, join(here, "../../gateway/main.ts"), "serve", "--data", dir, "--listen", "127.0.0.1:0", "--max-connections", String(CERTS * 2 + 1000), ...(values.db ? ["--db", values.db] : [])],
    { stderr: "pipe", stdout: "ignore" },
  );
  const url = await waitLine(gwProc, /gateway listening on (https:\/\/\S+)/);
  const admin = async <T>(path: string, body?: unknown): Promise<T> => {
    const res = await fetch(`${url}${path}`, {
      method: body === undefined ? "GET" : "POST",
      headers: { authorization: `Bearer ${data.adminToken}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      tls: { ca: data.ca.certPem },
    } as RequestInit);
    if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  };
  const entry = (version: string) => ({
    length: 0,
    hashes: { sha256: EMPTY_SHA256 },
    custom: { version, hardwareIds: ["amd64-linux"], tags: ["main"], docker_compose_apps: { shop: { uri: `127.0.0.1:1/main/shop@sha256:${version.repeat(64)}` } } },
  });
  await admin("/admin/targets", { targets: { "amd64-linux-1": entry("1"), "amd64-linux-2": entry("2") } });

  const creates: number[] = [];
  async function createRollout(): Promise<RolloutDetail> {
    const c0 = performance.now();
    const r = await admin<RolloutDetail>("/admin/rollouts", { target: "2", tag: "main", waves: WAVES });
    creates.push(ms(c0));
    log(`rollout ${r.id} created over ${r.counts.reduce((s, c) => s + c.devices, 0)} devices in ${ms(c0).toFixed(0)} ms`);
    return r;
  }

  // 4. Each further wave released through the API, timed.
  const first = await createRollout();
  const advances: number[] = [];
  for (let k = 1; k < WAVES.length; k++) {
    const a0 = performance.now();
    const r = await admin<RolloutDetail>(`/admin/rollouts/${first.id}/advance`, {});
    advances.push(ms(a0));
    if (r.wave !== k) throw new Error(`advance: expected wave ${k}, the rollout is at ${r.wave} (${r.state})`);
  }
  await admin(`/admin/rollouts/${first.id}/cancel`, {});

  // 5. Check-ins with and without an active rollout, alternating, best of ROUNDS.
  type LoadResult = { requests: number; errors: number; rps: number; p50: number; p99: number };
  async function load(mode: string): Promise<LoadResult> {
    const cfg = join(dir, `load-${mode}.json`);
    await writeFile(cfg, JSON.stringify({ url, ca: data.ca.certPem, devices, mode, seconds: SECONDS, concurrency: CLIENTS }));
    const p = Bun.spawn([bun, join(here, "../gateway-checkin/load.ts"), cfg], { stdout: "pipe", stderr: "inherit" });
    const out = await new Response(p.stdout).text();
    await p.exited;
    return JSON.parse(out.trim().split("\n").at(-1)!) as LoadResult; // after its "started" line
  }
  const fmt = (r: LoadResult) => `${r.rps.toFixed(0).padStart(6)} req/s p50 ${r.p50.toFixed(2)} p99 ${r.p99.toFixed(2)} ms${r.errors ? ` (${r.errors} errors)` : ""}`;
  const best: Record<string, { without?: LoadResult; with?: LoadResult }> = {};
  for (const mode of MODES) {
    best[mode] = {};
    for (let round = 0; round < ROUNDS; round++) {
      const order: ("without" | "with")[] = round % 2 ? ["with", "without"] : ["without", "with"];
      for (const phase of order) {
        const active = phase === "with" ? await createRollout() : undefined;
        const r = await load(mode);
        if (active) await admin(`/admin/rollouts/${active.id}/cancel`, {});
        log(`${mode.padEnd(9)} round ${round + 1} ${phase.padEnd(7)} rollout: ${fmt(r)}`);
        if (!best[mode]![phase] || r.rps > best[mode]![phase]!.rps) best[mode]![phase] = r;
      }
    }
  }

  const load1 = (await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ");
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log(`rollout benchmark: ${count} devices in the database (${values.db ? "PostgreSQL" : "SQLite"}), waves ${WAVES.join("%,")}%, load average ${load1}`);
  console.log(`membership in process (best of 3): audience query ${audienceMs.toFixed(0)} ms, order and waves ${assignMs.toFixed(0)} ms; wave sizes ${perWave.join(", ")}`);
  console.log(`create a rollout (API, end to end): ${creates.map((c) => c.toFixed(0)).join(", ")} ms (median ${median(creates).toFixed(0)} ms)`);
  console.log(`release each further wave (API advance): ${advances.map((a, i) => `wave ${i + 2} ${a.toFixed(0)} ms`).join(", ")}`);
  console.log(`check-ins: ${CERTS} device certificates, ${CLIENTS} clients, ${SECONDS} s per run, best of ${ROUNDS}, order alternating`);
  for (const mode of MODES) {
    const { without, with: withR } = best[mode]!;
    const ratio = withR!.rps / without!.rps;
    console.log(`${mode.padEnd(9)} without rollout ${fmt(without!)} | with rollout ${fmt(withR!)} | ratio ${ratio.toFixed(3)} (${Math.abs((1 - ratio) * 100).toFixed(1)}% ${ratio <= 1 ? "lower" : "higher"}; goal under 10% lower: ${ratio > 0.9 ? "met" : "NOT met"})`);
  }
} finally {
  if (gwProc) {
    gwProc.kill("SIGTERM");
    await gwProc.exited;
  }
  await rm(dir, { recursive: true, force: true });
}
