/**
 * Load: many simulated devices, each with its own key and client certificate
 * (registered through POST /devices like fioup does), check in and post
 * events over real mTLS against one gateway for a fixed time. Halfway through,
 * while requests are in flight, the gateway is SIGKILLed and restarted on the
 * same data dir and port. A device whose post was not acknowledged (connection
 * cut, refused while down, 5xx) sends the same batch again, as fioup's event
 * queue does. Afterwards: every acknowledged event is stored, none is stored
 * twice, and the admin API serves them. The database is read directly
 * (SQLite file, or PostgreSQL with OTA_TEST_DB=postgres).
 *
 * Run: `bun bench/reliability/load.ts [--devices N] [--seconds S] [--concurrency C]`
 * (defaults 10000 devices, 60 s, 64 in flight). Prints a JSON summary on stdout.
 *
 * @module
 */
import { Database } from "bun:sqlite";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { RegistrationResponse } from "../../lib/api/index.ts";
import { startGateway, type GatewayHandle } from "../../test/harness/gateway.ts";
import { run, tailFile } from "../../test/harness/tmp.ts";
import { makeDeviceCsr } from "../../test/gateway/_device.ts";
import { benchArgs } from "../_args.ts";

export interface LoadOptions {
  devices: number;
  seconds: number;
  concurrency: number;
  log?: (line: string) => void;
}

export interface LoadResult {
  devices: number;
  seconds: number;
  concurrency: number;
  registerSeconds: number;
  requests: number;
  requestsPerSecond: number;
  checkIns: number;
  eventPosts: number;
  eventsAcked: number;
  status: Record<string, number>;
  networkErrors: number;
  serverErrors: number;
  p50ms: number;
  p99ms: number;
  /** Acked events missing from the database before and after the SIGKILL + restart. */
  lostBeforeKill: number;
  lostAfterRestart: number;
  /** Events stored (rows) for the simulated devices after the run, and rows beyond one per event id. */
  eventsStored: number;
  duplicates: number;
  /** Posts that failed while the gateway was being killed and restarted, all sent again. */
  retriedPosts: number;
  /** Batches still unacknowledged at the end (sent again until acknowledged, for up to 60 s). */
  unacked: number;
  /** Seconds from the SIGKILL until the restarted gateway listened. */
  downSeconds: number;
  /** Devices sampled through the admin API after the restart, and how many showed all their events. */
  adminSampled: number;
  adminComplete: number;
}

interface Dev {
  uuid: string;
  cert: string;
  key: string;
  acked: string[];
  /** A batch sent but not acknowledged: sent again, unchanged, on the device's next turn. */
  pending?: { ids: string[]; body: string };
  /** A request of this device is in flight (a real device sends one batch at a time). */
  busy?: boolean;
}

let seq = 0;
/** A new batch of 1 to 5 events for `d` (ids unique across the run). */
function newBatch(d: Dev): { ids: string[]; body: string } {
  const n = 1 + (seq % 5);
  const ids = Array.from({ length: n }, () => `ev-${++seq}`);
  const evs = ids.map((id) => ({
    id,
    deviceTime: new Date().toISOString(),
    eventType: { id: "EcuDownloadStarted", version: 0 },
    event: { correlationId: `load-${d.uuid.slice(0, 8)}`, targetName: "amd64-linux-1", version: "1" },
  }));
  return { ids, body: JSON.stringify(evs) };
}

function tlsFetch(gw: GatewayHandle, d: Dev | undefined, path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${gw.url}${path}`, {
    ...init,
    keepalive: false,
    tls: { ca: gw.caPem, ...(d ? { cert: d.cert, key: d.key } : {}) },
  } as RequestInit);
}

async function pool<T>(items: T[], n: number, fn: (t: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i]!, i);
      }
    }),
  );
}

/** Every stored event of the gateway as `device/id` (one entry per row). */
async function storedEvents(dataDir: string): Promise<string[]> {
  const pgFile = join(dataDir, ".harness-db");
  if (existsSync(pgFile)) {
    const url = readFileSync(pgFile, "utf8").trim();
    const r = await run(["psql", url, "-At", "-c", "SELECT device_uuid || '/' || id FROM events"]);
    return r.stdout.split("\n").filter(Boolean);
  }
  const db = new Database(join(dataDir, "gateway.db"), { readonly: true });
  try {
    return db.query<{ k: string }, []>("SELECT device_uuid || '/' || id AS k FROM events").all().map((r) => r.k);
  } finally {
    db.close();
  }
}

async function ackedMissing(dataDir: string, devs: Dev[]): Promise<{ missing: number; stored: number; duplicates: number }> {
  const rows = (await storedEvents(dataDir)).filter((k) => k.includes("/ev-"));
  const have = new Set(rows);
  let missing = 0;
  for (const d of devs) for (const id of d.acked) if (!have.has(`${d.uuid}/${id}`)) missing++;
  return { missing, stored: rows.length, duplicates: rows.length - have.size };
}

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const log = opts.log ?? ((l: string) => process.stderr.write(l + "\n"));
  let gw = await startGateway();
  try {
    // 1. Register every device with its own key and certificate.
    const t0 = performance.now();
    let registerRetries = 0;
    const devs: Dev[] = new Array(opts.devices);
    await pool(Array.from({ length: opts.devices }, (_, i) => i), 32, async (i) => {
      const k = await makeDeviceCsr();
      const register = () =>
        tlsFetch(gw, undefined, "/devices", {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${gw.adminToken}` },
          body: JSON.stringify({ name: `load-${i}`, uuid: k.uuid, csr: k.csrPem, "hardware-id": "amd64-linux", tags: ["main"] }),
        });
      // A connection the gateway sheds under the registration burst is retried, as fioup register would be rerun.
      let res: Response | undefined;
      for (let attempt = 1; !res; attempt++) {
        try {
          res = await register();
        } catch (err) {
          if (attempt >= 5) throw err;
          registerRetries++;
          await Bun.sleep(100 * attempt);
        }
      }
      if (res.status !== 201) throw new Error(`register device ${i}: HTTP ${res.status} ${await res.text()}`);
      const body = (await res.json()) as RegistrationResponse;
      devs[i] = { uuid: k.uuid, cert: body.certificate, key: k.keyPem, acked: [] };
      if ((i + 1) % 1000 === 0) log(`registered ${i + 1}/${opts.devices}`);
    });
    const registerSeconds = (performance.now() - t0) / 1000;
    log(`registered ${opts.devices} devices in ${registerSeconds.toFixed(1)} s (${registerRetries} connection(s) retried)`);

    // 2. Check-ins and event posts for `seconds`.
    const status: Record<string, number> = {};
    const lat: number[] = [];
    let networkErrors = 0;
    let checkIns = 0;
    let eventPosts = 0;
    let retriedPosts = 0;
    let down = false;
    const started = Date.now();
    const end = started + opts.seconds * 1000;
    // Halfway: SIGKILL with requests in flight, restart on the same data dir and port.
    let downSeconds = 0;
    let lostBeforeKill = 0;
    const killer = (async () => {
      await Bun.sleep((opts.seconds * 1000) / 2);
      down = true;
      const k0 = performance.now();
      await gw.kill();
      gw = await startGateway({ dataDir: gw.dataDir });
      downSeconds = (performance.now() - k0) / 1000;
      down = false;
      log(`gateway SIGKILLed under load and restarted in ${downSeconds.toFixed(1)} s`);
    })();
    await Promise.all(
      Array.from({ length: opts.concurrency }, async (_, w) => {
        let turn = 0;
        while (Date.now() < end) {
          const d = devs[(w + turn * opts.concurrency) % devs.length]!;
          turn++;
          if (d.busy) {
            await Bun.sleep(0);
            continue;
          }
          d.busy = true;
          const s = performance.now();
          try {
            let res: Response;
            if (turn % 2) {
              res = await tlsFetch(gw, d, "/repo/timestamp.json", { headers: { "x-ats-target": "amd64-linux-1" } });
              checkIns++;
            } else {
              if (d.pending) retriedPosts++;
              d.pending ??= newBatch(d);
              const batch = d.pending;
              res = await tlsFetch(gw, d, "/events", { method: "POST", headers: { "content-type": "application/json" }, body: batch.body });
              eventPosts++;
              if (res.ok) {
                d.acked.push(...batch.ids);
                d.pending = undefined;
              }
            }
            await res.arrayBuffer();
            status[res.status] = (status[res.status] ?? 0) + 1;
            lat.push(performance.now() - s);
          } catch {
            networkErrors++;
            if (down) await Bun.sleep(50);
          } finally {
            d.busy = false;
          }
        }
      }),
    );
    await killer;
    // Devices send what was not acknowledged until it is (as fioup's queue does), for up to 60 s.
    const resendUntil = Date.now() + 60_000;
    for (let left = devs.filter((d) => d.pending); left.length && Date.now() < resendUntil; left = devs.filter((d) => d.pending)) {
      await pool(left, opts.concurrency, async (d) => {
        retriedPosts++;
        try {
          const res = await tlsFetch(gw, d, "/events", { method: "POST", headers: { "content-type": "application/json" }, body: d.pending!.body });
          await res.arrayBuffer();
          if (res.ok) {
            d.acked.push(...d.pending!.ids);
            d.pending = undefined;
          }
        } catch {
          networkErrors++;
        }
      });
    }
    const unacked = devs.filter((d) => d.pending).length;
    lat.sort((a, b) => a - b);
    const requests = lat.length;
    const eventsAcked = devs.reduce((n, d) => n + d.acked.length, 0);
    log(`${requests} requests in ${opts.seconds} s; ${eventsAcked} events acknowledged; statuses ${JSON.stringify(status)}; network errors ${networkErrors}`);

    // 3. Everything acknowledged is in the database once; SIGKILL again (idle); restart; still there.
    const live = await ackedMissing(gw.dataDir, devs);
    lostBeforeKill = live.missing;
    await gw.kill();
    gw = await startGateway({ dataDir: gw.dataDir });
    const after = await ackedMissing(gw.dataDir, devs);
    const lostAfterRestart = after.missing;
    const sample = devs.filter((d) => d.acked.length > 0).slice(0, 50);
    let adminComplete = 0;
    for (const d of sample) {
      const text = await (await gw.adminFetch(`/admin/devices/${d.uuid}/updates`)).text();
      if (d.acked.every((id) => text.includes(`"${id}"`))) adminComplete++;
    }
    log(`after SIGKILL + restart: ${lostAfterRestart} acknowledged events missing; admin API shows all events for ${adminComplete}/${sample.length} sampled devices`);
    return {
      devices: opts.devices,
      seconds: opts.seconds,
      concurrency: opts.concurrency,
      registerSeconds: Math.round(registerSeconds * 10) / 10,
      requests,
      requestsPerSecond: Math.round(requests / opts.seconds),
      checkIns,
      eventPosts,
      eventsAcked,
      status,
      networkErrors,
      serverErrors: Object.entries(status).filter(([k]) => Number(k) >= 500).reduce((n, [, v]) => n + v, 0),
      p50ms: Math.round(lat[Math.floor(requests * 0.5)] ?? 0),
      p99ms: Math.round(lat[Math.floor(requests * 0.99)] ?? 0),
      lostBeforeKill,
      lostAfterRestart,
      eventsStored: after.stored,
      duplicates: after.duplicates,
      retriedPosts,
      unacked,
      downSeconds: Math.round(downSeconds * 10) / 10,
      adminSampled: sample.length,
      adminComplete,
    };
  } catch (err) {
    // A 500 says "Internal error" and no more: the gateway's log has the cause (its temp dir goes at exit).
    if (err instanceof Error) err.message += `\n--- the gateway's log (${gw.logFile}), its end ---\n${tailFile(gw.logFile, 4000)}`;
    throw err;
  } finally {
    await gw.stop();
  }
}

if (import.meta.main) {
  const { values } = benchArgs({
    options: { devices: { type: "string", default: "10000" }, seconds: { type: "string", default: "60" }, concurrency: { type: "string", default: "64" } },
  });
  const arg = (name: keyof typeof values) => {
    const n = /^[0-9]+$/.test(values[name]) ? Number(values[name]) : 0;
    if (n < 1) {
      process.stderr.write(`--${name} must be a whole number 1 or more, got "${values[name]}"\nRun with --help for the options.\n`);
      process.exit(2);
    }
    return n;
  };
  const r = await runLoad({ devices: arg("devices"), seconds: arg("seconds"), concurrency: arg("concurrency") });
  console.log(JSON.stringify(r, null, 2));
  process.exit(r.lostBeforeKill === 0 && r.lostAfterRestart === 0 && r.duplicates === 0 && r.unacked === 0 ? 0 : 1);
}
