/**
 * bench/push/tls-floor: what a held TLS connection costs a Bun server, and how much of it is the
 * device's client certificate. The push goal (under 10 MB of gateway RSS per 1,000 held) is
 * measured by bench/push/run.ts against its `bare` side, a Bun.listen server with the gateway's
 * TLS setup that keeps nothing per connection: 15-17 MB per 1,000, the gateway within a few
 * tenths of it. This splits that floor, in one run, sides alternating round by round:
 *
 * - `mtls`: the gateway's TLS setup (client certificates requested, verified against the factory
 *   CA), every device presenting its own certificate (distinct ones: identical certificates
 *   could share memory);
 * - `mtls-low`: the same with Bun's `lowMemoryMode` (OpenSSL's release-buffers mode);
 * - `mtls-resumed`: as `mtls`, each device resuming the TLS session (a ticket) it got from this
 *   server in a full handshake before the idle reading, as fioup does when it reconnects;
 * - `nocert`: the same server, the devices presenting no certificate (what TLS itself costs).
 *
 * Each side is a fresh server process (bench/push/_bare.ts, which keeps nothing per connection
 * but a flag) holding N connections that each sent a request head and wait; this process is the
 * devices (node:tls, as many sockets as asked). The server's RSS (process.memoryUsage, which it
 * prints on SIGUSR2) is read after two full garbage collections in it, with none held and with
 * all N held: MB per 1,000 held is (held - idle) / N * 1000. Before the idle reading each device
 * connects once and closes (GET /hello), so the server's allocator has grown as a running
 * gateway's has; what is measured is the steady cost of a held connection, not a fresh process's.
 *
 * Usage: bun bench/push/tls-floor.ts [--devices 4000] [--rounds 2] [--sides mtls,mtls-low,mtls-resumed,nocert]
 *
 * @module
 */
import { mkdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { openDataDir } from "../../gateway/data-dir.ts";
import { signDeviceCsr } from "../../gateway/pki/ca.ts";
import { makeDeviceCsr } from "../../test/gateway/_device.ts";
import { benchArgs } from "../_args.ts";

const { values } = benchArgs({
  options: { devices: { type: "string", default: "4000" }, rounds: { type: "string", default: "2" }, sides: { type: "string", default: "mtls,mtls-low,mtls-resumed,nocert" } },
});
const N = Number(values.devices);
const ROUNDS = Number(values.rounds);
const SIDES = values.sides!.split(",");
const KNOWN = ["mtls", "mtls-low", "mtls-resumed", "nocert"];
if (!(N > 0) || !(ROUNDS > 0) || !SIDES.every((s) => KNOWN.includes(s))) {
  process.stderr.write(`Invalid options: --devices and --rounds take positive numbers, --sides a comma-separated list of ${KNOWN.join(", ")}\n`);
  process.exit(2);
}

const dir = join(tmpdir(), `push-tls-floor-${process.pid}`);
await mkdir(dir, { recursive: true });
try {
  const data = await openDataDir(join(dir, "data"), { hosts: ["127.0.0.1"] });
  const files = { cert: join(dir, "server.pem"), key: join(dir, "server.key"), ca: join(dir, "ca.pem") };
  await writeFile(files.cert, data.serverCertPem);
  await writeFile(files.key, data.serverKeyPem);
  await writeFile(files.ca, data.ca.certPem);
  // A key and a certificate per device, as a fleet has.
  const devices: { key: string; cert: string }[] = [];
  for (let i = 0; i < N; i++) {
    const k = await makeDeviceCsr();
    devices.push({ key: k.keyPem, cert: (await signDeviceCsr(data.ca, k.csrPem, { uuid: k.uuid, factory: "main" })).certPem });
    if ((i + 1) % 1000 === 0) process.stderr.write(`issued ${i + 1}/${N} device certificates\n`);
  }
  console.log(`${N} connections held per side, ${ROUNDS} rounds, sides alternating; MB of server RSS per 1,000 held (held - idle)`);
  const results = new Map<string, number[]>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const side of round % 2 ? [...SIDES].reverse() : SIDES) {
      Bun.spawnSync(["sync"]);
      const r = await measure(side, files, side === "nocert" ? undefined : devices);
      console.log(`round ${round + 1} ${side.padEnd(8)} idle ${r.idle.toFixed(1)} MB, ${N} held ${r.held.toFixed(1)} MB: ${r.per1000.toFixed(2)} MB per 1,000`);
      results.set(side, [...(results.get(side) ?? []), r.per1000]);
    }
  }
  for (const [side, xs] of results) console.log(`${side.padEnd(8)} ${xs.map((x) => x.toFixed(2)).join(" / ")} MB per 1,000 held`);
} finally {
  await rm(dir, { recursive: true, force: true });
}

/** Runs `one(i)` for i in 0..n-1, 250 at a time (a batch once the previous one is done). */
async function inBatches(n: number, one: (i: number) => Promise<void>): Promise<void> {
  for (let b = 0; b < n; b += 250) await Promise.all(Array.from({ length: Math.min(250, n - b) }, (_, j) => one(b + j)));
}

async function measure(side: string, files: { cert: string; key: string; ca: string }, devices?: { key: string; cert: string }[]) {
  const server = Bun.spawn([process.execPath, join(import.meta.dir, "_bare.ts"), files.cert, files.key, files.ca], {
    env: { ...process.env, PUSH_BARE_LOW_MEMORY: side === "mtls-low" ? "1" : "", PUSH_BARE_RSS_ON_SIGNAL: "1" },
    stdout: "pipe",
    stderr: "inherit",
  });
  const reader = (server.stdout as ReadableStream<Uint8Array>).getReader();
  let out = "";
  const line = async () => {
    while (!out.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`bench/push/_bare.ts ended early: ${out}`);
      out += new TextDecoder().decode(value);
    }
    const i = out.indexOf("\n");
    const l = out.slice(0, i);
    out = out.slice(i + 1);
    return l;
  };
  const port = Number(await line());
  /** The server's RSS in MB after two full collections in it (it answers SIGUSR2 with one line). */
  const rss = async () => {
    server.kill("SIGUSR2");
    return Number(await line()) / 1e6;
  };
  const sockets: tls.TLSSocket[] = [];
  try {
    const ca = await Bun.file(files.ca).text();
    // Every side first connects each device once, asks GET /hello and closes: the server's first
    // connections cost more than later ones (its allocator's arenas grow), so the idle reading comes
    // after them. mtls-resumed keeps each device's session from it, as fioup keeps one.
    const sessions: (Buffer | undefined)[] = [];
    await inBatches(N, (i) =>
      new Promise<void>((resolve, reject) => {
        const s = tls.connect({ host: "127.0.0.1", port, ca, ...(devices ? devices[i] : {}) }, () => s.write("GET /hello HTTP/1.1\r\nhost: gateway\r\n\r\n"));
        if (side === "mtls-resumed") s.once("session", (session: Buffer) => (sessions[i] = session));
        s.once("data", () => {
          // The answer came after the ticket (TLS 1.3 sends it with the server's first write).
          s.destroy();
          resolve();
        });
        s.on("error", reject);
        s.once("close", () => reject(new Error("the server closed a connection before answering GET /hello")));
      }),
    );
    // The server has seen every close of the last batch before it is measured idle.
    await Bun.sleep(1000);
    const idle = await rss();
    let resumed = 0;
    await inBatches(N, (i) =>
      new Promise<void>((resolve, reject) => {
        const s = tls.connect({ host: "127.0.0.1", port, ca, ...(devices ? devices[i] : {}), ...(sessions[i] ? { session: sessions[i] } : {}) }, () => {
          if (s.isSessionReused()) resumed++;
          s.write("GET /repo/wait HTTP/1.1\r\nhost: gateway\r\n\r\n", () => resolve());
        });
        s.on("error", reject);
        sockets.push(s);
      }),
    );
    if (side === "mtls-resumed" && resumed < N) process.stderr.write(`mtls-resumed: only ${resumed} of ${N} connections resumed their session\n`);
    await Bun.sleep(500); // the last heads reach the server
    const held = await rss();
    return { idle, held, per1000: ((held - idle) / N) * 1000 };
  } finally {
    for (const s of sockets) s.destroy();
    server.kill("SIGTERM");
    await server.exited;
  }
}
