/**
 * Replicas benchmark: check-ins/s through HAProxy (deploy/haproxy/gateway.cfg, terminating device
 * TLS and forwarding the certificate) in front of 1, 2 and 3 `gateway serve` replicas on one
 * PostgreSQL, and one replica without HAProxy, all in the same run. The replicas share a copy of
 * one data dir (CA, TUF keys) and one --registry-dir, as an operator would set them up.
 *
 * A check-in is GET /repo/timestamp.json then POST /events (one event), from simulated devices
 * with their own certificates, each with its connection kept alive (bench/gateway-checkin/load.ts).
 * Sides alternate in order between rounds, `sync` runs between sides, and each side's best of
 * --rounds counts: the machine is shared. On a 2-core machine this shows HAProxy's overhead, not
 * scaling (every replica and HAProxy share the same two cores).
 *
 * Usage: bun bench/replicas/run.ts [--certs 2000] [--clients 32] [--seconds 6] [--rounds 3] [--max-replicas 3] [--haproxy-config gateway.cfg]
 */
import { cpSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { openDataDir } from "../../gateway/data-dir.ts";
import { signDeviceCsr } from "../../gateway/pki/ca.ts";
import { openStore } from "../../gateway/store/open.ts";
import { startGateway, type GatewayHandle } from "../../test/harness/gateway.ts";
import { startPostgres } from "../../test/harness/postgres.ts";
import { startHaproxy, type ProxyHandle } from "../../test/harness/proxies.ts";
import { tempDir } from "../../test/harness/tmp.ts";
import { makeDeviceCsr } from "../../test/gateway/_device.ts";

const { values } = parseArgs({
  options: {
    certs: { type: "string", default: "2000" },
    clients: { type: "string", default: "32" },
    seconds: { type: "string", default: "6" },
    rounds: { type: "string", default: "3" },
    "max-replicas": { type: "string", default: "3" },
    /** Another HAProxy config under deploy/haproxy/ (to compare a tuning). */
    "haproxy-config": { type: "string", default: "gateway.cfg" },
  },
});
const CERTS = Number(values.certs);
const CLIENTS = Number(values.clients);
const SECONDS = Number(values.seconds);
const ROUNDS = Number(values.rounds);
const MAX = Number(values["max-replicas"]);
const log = (s: string) => process.stderr.write(s + "\n");
const stops: (() => Promise<void>)[] = [];

interface LoadResult {
  requests: number;
  errors: number;
  rps: number;
  p50: number;
  p99: number;
}

try {
  const pg = await startPostgres();
  stops.push(() => pg.stop());
  const db = await pg.createDatabase("bench_replicas");
  const registryDir = join(await tempDir("bench-registry-"), "registry");
  const args = ["--registry-dir", registryDir, "--trust-proxy", "127.0.0.1", "--client-cert-header", "x-ssl-client-cert", "--max-connections", String(CERTS * 2 + 1000)];
  const replicas: GatewayHandle[] = [await startGateway({ db, args })];
  stops.push(() => replicas[0]!.stop());
  for (let i = 1; i < MAX; i++) {
    const dataDir = join(await tempDir("bench-replica-"), "data");
    cpSync(replicas[0]!.dataDir, dataDir, { recursive: true, filter: (src) => !src.endsWith(".harness-port") && !src.endsWith("serve.json") });
    const r = await startGateway({ db, dataDir, args });
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

  const proxies: ProxyHandle[] = [];
  for (let n = 1; n <= MAX; n++) {
    const p = await startHaproxy({ file: values["haproxy-config"], dataDir: replicas[0]!.dataDir, replicas: replicas.slice(0, n).map((r) => r.host) });
    proxies.push(p);
    stops.push(() => p.stop());
  }
  const sides: [string, string][] = [["1 replica, no HAProxy", replicas[0]!.url], ...proxies.map((p, i): [string, string] => [`HAProxy + ${i + 1} replica${i ? "s" : ""}`, p.url])];

  const dir = await tempDir("bench-replicas-load-");
  async function load(url: string): Promise<LoadResult> {
    const cfg = join(dir, "load.json");
    await writeFile(cfg, JSON.stringify({ url, ca: replicas[0]!.caPem, devices, mode: "keepalive", seconds: SECONDS, concurrency: CLIENTS }));
    const p = Bun.spawn([process.execPath, join(import.meta.dir, "../gateway-checkin/load.ts"), cfg], { stdout: "pipe", stderr: "inherit" });
    const out = await new Response(p.stdout).text();
    await p.exited;
    return JSON.parse(out.trim()) as LoadResult;
  }
  const fmt = (r: LoadResult) =>
    `${r.rps.toFixed(0).padStart(6)} check-in requests/s p50 ${r.p50.toFixed(2).padStart(6)} p99 ${r.p99.toFixed(2).padStart(7)} ms${r.errors ? ` (${r.errors} errors)` : ""}`;
  const best: Record<string, LoadResult> = {};
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 ? [...sides].reverse() : sides;
    for (const [name, url] of order) {
      Bun.spawnSync(["sync"]);
      const r = await load(url);
      log(`round ${round + 1} ${name.padEnd(24)} ${fmt(r)}`);
      if (!best[name] || r.rps > best[name]!.rps) best[name] = r;
    }
  }
  const base = best[sides[0]![0]]!.rps;
  console.log(
    `PostgreSQL, ${MAX} replicas, ${CERTS} device certificates, ${CLIENTS} clients kept alive, ${SECONDS} s per side, best of ${ROUNDS}; ` +
      `a check-in = GET /repo/timestamp.json + POST /events; load average ${(await Bun.file("/proc/loadavg").text()).split(" ").slice(0, 3).join(" ")}`,
  );
  for (const [name] of sides) console.log(`${name.padEnd(24)} ${fmt(best[name]!)}  ${(best[name]!.rps / base).toFixed(2)}x one replica without HAProxy`);
} finally {
  for (const stop of stops.reverse()) await stop().catch((e) => log(`stop failed: ${(e as Error).message}`));
}
