/**
 * The load generator (its own process, so it does not share an event loop
 * with the server). Each of `concurrency` workers makes check-ins one after
 * the other, each as the next of its devices (w, w + C, w + 2C, ...), so with
 * thousands of certificates the gateway's device cache misses as in a fleet.
 * A check-in is GET /repo/timestamp.json then POST /events with one event
 * ("poll" and "newconn-poll" modes: only the GET).
 *
 * The client is a raw HTTP/1.1 client on Bun.connect TLS sockets, one per device: Bun's fetch
 * keeps only a few idle connections, so with 10,000 client certificates "kept alive" would
 * silently be a new handshake per check-in, and it costs the shared CPU more. In `keepalive`
 * and `poll` modes every device's connection is opened, and checked in once, before the clock
 * starts (a fleet's devices are connected already); `newconn` makes each request with Bun's
 * fetch on a new connection (keepalive: false), handshake included in the latency.
 *
 * Prints "started" when the clock starts, then one JSON line: requests, errors, seconds, req/s, p50/p99 ms of a request and of a check-in (its GET and POST together; not in the poll modes), the connections opened, and its own CPU seconds over the timed part.
 *
 * Usage: bun load.ts <config.json>
 */
import type { Socket } from "bun";

interface Config {
  url: string;
  ca: string;
  devices: { cert: string; key: string }[];
  mode: "keepalive" | "newconn" | "poll" | "newconn-poll";
  seconds: number;
  concurrency: number;
}

const cfg = (await Bun.file(process.argv[2]!).json()) as Config;
const { hostname, port } = new URL(cfg.url);
const keepalive = !cfg.mode.startsWith("newconn");
const pollOnly = cfg.mode === "poll" || cfg.mode === "newconn-poll";
const HEAD_END = Buffer.from("\r\n\r\n");
const REQUEST_TIMEOUT_MS = 20_000;

class ConnectionLostError extends Error {
  override name = "ConnectionLostError";
}

/** One TLS connection: one request at a time, answers parsed by Content-Length (or chunked). */
class Conn {
  sock: Socket<undefined> | undefined;
  closed = false;
  #buf: Buffer | undefined;
  #waiting: { resolve: (status: number) => void; reject: (e: Error) => void } | undefined;

  /** Resolves once the TLS handshake is done (a write before it would be dropped). */
  static async open(dev: { cert: string; key: string }): Promise<Conn> {
    const c = new Conn();
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    c.#waitHandshake = reject;
    c.sock = await Bun.connect({
      hostname,
      port: Number(port),
      tls: { ca: cfg.ca, cert: dev.cert, key: dev.key },
      socket: {
        handshake: (_s, ok, err) => (ok ? resolve() : reject(err ?? new ConnectionLostError("TLS handshake failed"))),
        data: (_s, d) => c.#data(d),
        close: () => c.#lost(),
        error: () => c.#lost(),
        end: () => c.#lost(),
        connectError: () => c.#lost(),
      },
    });
    const timer = setTimeout(() => reject(new ConnectionLostError("TLS handshake timed out")), REQUEST_TIMEOUT_MS);
    try {
      await promise;
    } catch (err) {
      c.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    c.#waitHandshake = undefined;
    return c;
  }

  #waitHandshake: ((e: Error) => void) | undefined;

  #lost() {
    this.closed = true;
    this.#waitHandshake?.(new ConnectionLostError("connection closed during the TLS handshake"));
    const w = this.#waiting;
    this.#waiting = undefined;
    w?.reject(new ConnectionLostError("connection closed"));
  }

  #data(d: Buffer) {
    this.#buf = this.#buf ? Buffer.concat([this.#buf, d]) : d;
    const buf = this.#buf;
    const end = buf.indexOf(HEAD_END);
    if (end < 0 || !this.#waiting) return;
    const head = buf.toString("latin1", 0, end).toLowerCase();
    const status = Number(head.slice(9, 12));
    const m = /\r\ncontent-length: *(\d+)/.exec(head);
    let total: number;
    if (m) total = end + 4 + Number(m[1]);
    else if (head.includes("transfer-encoding: chunked")) {
      const last = buf.indexOf("\r\n0\r\n\r\n", end);
      if (last < 0) return;
      total = last + 7;
    } else total = end + 4;
    if (buf.byteLength < total) return;
    this.#buf = buf.byteLength > total ? buf.subarray(total) : undefined;
    const w = this.#waiting;
    this.#waiting = undefined;
    w.resolve(status);
  }

  request(raw: string): Promise<number> {
    if (this.closed) return Promise.reject(new ConnectionLostError("connection closed"));
    return new Promise((resolve, reject) => {
      // An answer that never comes counts as an error (and the connection is dropped), not a hang.
      const timer = setTimeout(() => {
        this.#waiting = undefined;
        this.close();
        reject(new ConnectionLostError(`no answer within ${REQUEST_TIMEOUT_MS} ms`));
      }, REQUEST_TIMEOUT_MS);
      this.#waiting = {
        resolve: (status) => (clearTimeout(timer), resolve(status)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      };
      this.sock!.write(raw);
    });
  }

  close() {
    this.closed = true;
    this.sock?.end();
  }
}

const conns: (Conn | undefined)[] = new Array(cfg.devices.length);
async function connFor(i: number): Promise<Conn> {
  const c = conns[i];
  if (keepalive && c && !c.closed) return c;
  const fresh = await Conn.open(cfg.devices[i]!);
  if (keepalive) conns[i] = fresh;
  return fresh;
}

const host = `${hostname}:${port}`;
const conn = keepalive ? "keep-alive" : "close";
const getTimestamp = `GET /repo/timestamp.json HTTP/1.1\r\nhost: ${host}\r\nconnection: ${conn}\r\nx-ats-tags: main\r\nx-ats-target: amd64-linux-1\r\n\r\n`;
function postEvent(w: number, n: number): string {
  const body = JSON.stringify([
    {
      id: `${w}-${n}-${Math.random().toString(36).slice(2)}`,
      deviceTime: new Date().toISOString(),
      eventType: { id: "EcuDownloadStarted", version: 2 },
      event: { correlationId: `c-${w}`, targetName: "amd64-linux-1", version: "1" },
    },
  ]);
  return `POST /events HTTP/1.1\r\nhost: ${host}\r\nconnection: ${conn}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

let opened = 0;
/**
 * A new connection per request goes through Bun's fetch (keepalive: false): it caches the TLS
 * context per certificate, where Bun.connect would parse CA, certificate and key again each time.
 */
async function sendFetch(i: number, raw: string): Promise<number> {
  const dev = cfg.devices[i]!;
  const headEnd = raw.indexOf("\r\n\r\n");
  const [line, ...fields] = raw.slice(0, headEnd).split("\r\n");
  const [method, path] = line!.split(" ");
  const headers = fields.map((f) => [f.slice(0, f.indexOf(":")), f.slice(f.indexOf(":") + 1).trim()] as [string, string]).filter(([k]) => k !== "host" && k !== "connection" && k !== "content-length");
  const body = method === "POST" ? raw.slice(headEnd + 4) : undefined;
  opened++;
  const res = await fetch(cfg.url + path, { method, headers, body, keepalive: false, tls: { ca: cfg.ca, cert: dev.cert, key: dev.key } } as RequestInit);
  await res.arrayBuffer();
  return res.status;
}
/** One request on the device's connection (a new one in newconn mode, or if the server closed it). */
async function send(i: number, raw: string): Promise<number> {
  if (!keepalive) return sendFetch(i, raw);
  const c = await connFor(i);
  return c.request(raw);
}

// Kept alive: connect every device and check it in once (the server then counts it authenticated), not timed.
if (keepalive) {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(64, cfg.devices.length) }, async () => {
      while (next < cfg.devices.length) {
        const i = next++;
        await send(i, getTimestamp).catch(() => undefined);
        opened++;
      }
    }),
  );
}

console.log("started"); // the driver measures the server's CPU from here
const lat: number[] = [];
/** A check-in's latency, its GET and POST together (what a device waits for a check-in): not in the poll modes. */
const checkinLat: number[] = [];
let errors = 0;
let requests = 0;
const start = performance.now();
const cpuStart = process.cpuUsage();
const deadline = start + cfg.seconds * 1000;

async function worker(w: number) {
  let n = 0;
  // Each worker only its own devices (w, w + C, w + 2C, ... below N): two requests at once on one
  // device's connection would take each other's answers.
  const own = Math.max(1, Math.floor(cfg.devices.length / cfg.concurrency));
  for (let k = 0; performance.now() < deadline; k++) {
    const i = w + cfg.concurrency * (k % own);
    const checkinStart = performance.now();
    for (const post of pollOnly ? [false] : [false, true]) {
      const t0 = performance.now();
      try {
        const status = await send(i, post ? postEvent(w, n++) : getTimestamp);
        if (status >= 300) errors++;
      } catch {
        errors++;
      }
      lat.push(performance.now() - t0);
      requests++;
    }
    if (!pollOnly) checkinLat.push(performance.now() - checkinStart);
  }
}

await Promise.all(Array.from({ length: cfg.concurrency }, (_, i) => worker(i)));
const secs = (performance.now() - start) / 1000;
const cpu = process.cpuUsage(cpuStart);
for (const c of conns) c?.close();
const quantile = (xs: number[], p: number) => xs.sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))] ?? 0;
const checkin = pollOnly ? {} : { checkinP50: quantile(checkinLat, 0.5), checkinP99: quantile(checkinLat, 0.99) };
console.log(JSON.stringify({ requests, errors, seconds: secs, rps: requests / secs, p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), ...checkin, connections: opened, cpu: (cpu.user + cpu.system) / 1e6 }));
process.exit(0);
