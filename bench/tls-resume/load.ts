/**
 * The load generator for bench/tls-resume (its own process). Every check-in is one new TLS
 * connection carrying GET /repo/timestamp.json then POST /events (one event), closed after
 * (with `poll`, the GET alone).
 * `full` offers no session (a full handshake with both certificates each time); `resumed`
 * offers the session the device got from this server last time (node:tls `session`, as a
 * device that keeps its session would). Before the clock starts every device checks in once
 * (both modes, untimed), so `resumed` has a session per device and both modes leave the
 * server in the same state. Each of `concurrency` workers checks in as the next of its
 * devices (w, w + C, ...).
 *
 * Prints one JSON line: check-ins, errors, seconds, check-ins/s, p50/p99 ms, how many
 * connections the client saw resumed, and the server's CPU ms per check-in over the timed run
 * (user + system of its process; unlike check-ins/s it barely moves with other jobs' load).
 *
 * Usage: bun load.ts <config.json>
 */
import { exchange, type RawRequest } from "../../test/harness/resumable-tls.ts";
import { cpuSeconds } from "../_proc.ts";

interface Config {
  url: string;
  ca: string;
  devices: { cert: string; key: string }[];
  mode: "full" | "resumed";
  seconds: number;
  concurrency: number;
  /** Only the GET (a poll that finds nothing new). */
  poll?: boolean;
  /** The server's process: its CPU time over the timed run is reported per check-in. */
  serverPid?: number;
}

const cfg = (await Bun.file(process.argv[2]!).json()) as Config;
const { hostname, port: portText } = new URL(cfg.url);
const port = Number(portText);
const sessions: (Buffer | undefined)[] = new Array(cfg.devices.length);
const getTimestamp: RawRequest = { method: "GET", path: "/repo/timestamp.json", headers: { "x-ats-tags": "main", "x-ats-target": "amd64-linux-1" } };
let n = 0;
const postEvent = (w: number): RawRequest => ({
  method: "POST",
  path: "/events",
  headers: { "content-type": "application/json" },
  body: JSON.stringify([
    {
      id: `${w}-${n++}-${Math.random().toString(36).slice(2)}`,
      deviceTime: new Date().toISOString(),
      eventType: { id: "EcuDownloadStarted", version: 2 },
      event: { correlationId: `c-${w}`, targetName: "amd64-linux-1", version: "1" },
    },
  ]),
});

let resumed = 0;
/** One check-in on a new connection; returns whether every answer was a success. */
async function checkIn(i: number, w: number): Promise<boolean> {
  const dev = cfg.devices[i]!;
  const x = await exchange(hostname, port, { ca: cfg.ca, cert: dev.cert, key: dev.key }, cfg.poll ? [getTimestamp] : [getTimestamp, postEvent(w)], {
    session: cfg.mode === "resumed" ? sessions[i] : undefined,
  });
  sessions[i] = x.session;
  if (x.resumed) resumed++;
  return x.responses.every((r) => r.status < 300);
}

// Untimed: one check-in per device (sessions for `resumed`, the same server state for both modes).
let next = 0;
await Promise.all(
  Array.from({ length: Math.min(cfg.concurrency, cfg.devices.length) }, async (_, w) => {
    while (next < cfg.devices.length) await checkIn(next++, w).catch(() => false);
  }),
);
resumed = 0;

const lat: number[] = [];
let errors = 0;
let checkins = 0;
const cpu0 = cfg.serverPid ? cpuSeconds(cfg.serverPid) : NaN;
const start = performance.now();
const deadline = start + cfg.seconds * 1000;
await Promise.all(
  Array.from({ length: cfg.concurrency }, async (_, w) => {
    for (let k = 0; performance.now() < deadline; k++) {
      const i = (w + k * cfg.concurrency) % cfg.devices.length;
      const t0 = performance.now();
      const ok = await checkIn(i, w).catch(() => false);
      if (!ok) errors++;
      lat.push(performance.now() - t0);
      checkins++;
    }
  }),
);
const seconds = (performance.now() - start) / 1000;
const serverCpuMs = ((cfg.serverPid ? cpuSeconds(cfg.serverPid) : NaN) - cpu0) * 1000 / Math.max(1, checkins);
lat.sort((a, b) => a - b);
const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? 0;
console.log(JSON.stringify({ checkins, errors, seconds, cps: checkins / seconds, p50: q(0.5), p99: q(0.99), resumed, serverCpuMs }));
process.exit(0);
