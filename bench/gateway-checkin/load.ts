/**
 * The load generator (its own process, so it does not share an event loop
 * with the server): each worker is one simulated device with its own client
 * certificate, cycling through all of them; a check-in is GET /repo/timestamp.json then POST /events with
 * one event ("poll" mode: only the GET, kept alive). Prints one JSON line: requests, seconds, req/s, p50/p99 ms.
 *
 * Usage: bun load.ts <config.json>
 */
export {};
interface Config {
  url: string;
  ca: string;
  devices: { cert: string; key: string }[];
  mode: "keepalive" | "newconn" | "poll";
  seconds: number;
  concurrency: number;
}

const cfg = (await Bun.file(process.argv[2]!).json()) as Config;
const lat: number[] = [];
let errors = 0;
let requests = 0;
const deadline = performance.now() + cfg.seconds * 1000;
const keepalive = cfg.mode !== "newconn";
const pollOnly = cfg.mode === "poll";

async function worker(w: number) {
  let n = 0;
  // Each check-in is made as the next of this worker's devices (w, w + C, w + 2C, ...): with
  // thousands of certificates the gateway's device cache misses as it does in a fleet, and kept
  // alive means one kept-alive connection per device, as devices have.
  for (let k = 0; performance.now() < deadline; k++) {
    const dev = cfg.devices[(w + k * cfg.concurrency) % cfg.devices.length]!;
    const tls = { ca: cfg.ca, cert: dev.cert, key: dev.key };
    for (const [path, init] of [
      ["/repo/timestamp.json", { headers: { "x-ats-tags": "main", "x-ats-target": "amd64-linux-1" } }],
      [
        "/events",
        {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify([
            {
              id: `${w}-${n++}-${Math.random().toString(36).slice(2)}`,
              deviceTime: new Date().toISOString(),
              eventType: { id: "EcuDownloadStarted", version: 2 },
              event: { correlationId: `c-${w}`, targetName: "amd64-linux-1", version: "1" },
            },
          ]),
        },
      ],
    ] as const) {
      if (pollOnly && path === "/events") continue;
      const t0 = performance.now();
      try {
        const res = await fetch(cfg.url + path, { ...(init as RequestInit), tls, keepalive } as RequestInit);
        await res.arrayBuffer();
        if (res.status >= 300) errors++;
      } catch {
        errors++;
      }
      lat.push(performance.now() - t0);
      requests++;
    }
  }
}

const start = performance.now();
await Promise.all(Array.from({ length: cfg.concurrency }, (_, i) => worker(i)));
const secs = (performance.now() - start) / 1000;
lat.sort((a, b) => a - b);
const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? 0;
console.log(JSON.stringify({ requests, errors, seconds: secs, rps: requests / secs, p50: q(0.5), p99: q(0.99) }));
