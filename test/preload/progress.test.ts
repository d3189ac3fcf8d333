/**
 * A big layer is not silent while it downloads: preload shows the bytes fetched so far of the
 * bytes to fetch, on a terminal as one line rewritten in place (cleared before each blob's line),
 * in a log as a plain line every 10 s; with --json, stdout stays one JSON document. The gateway
 * (and its registry) sits behind a fault proxy that holds the big layer mid-way, so the line is
 * seen in the middle of the blob whatever the machine's speed. A gateway gone mid-download is
 * said as retries with the time so far, a long step without bytes (the base copy) says its time
 * every 10 s, and a download resumed from an interrupted run counts only what it fetched.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { run } from "../harness/tmp.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { startFaultProxy, type FaultProxy } from "../harness/fault-proxy.ts";
import { tempDir } from "../harness/tmp.ts";
import { Publisher, httpdCompose, httpdImage, pushImage, randomBytes, startDockerRegistry, ROOT, type DockerRegistryHandle } from "../fioup/_setup.ts";
import { asTestGateway, factoryConfig, preload, preloadConfig } from "./_setup.ts";

const A = "pl4a";
const BIG = 8 << 20;
let upstream: DockerRegistryHandle;
let proxy: FaultProxy;
let gw: GatewayHandle;
let work: string;
let fc: string;

beforeAll(async () => {
  proxy = await startFaultProxy(0, 0);
  [upstream, gw] = await Promise.all([startDockerRegistry(), startGateway({ args: ["--polling-seconds", "1", "--public-url", `https://127.0.0.1:${proxy.port}`] })]);
  proxy.target = gw.port;
  const image = httpdImage(`${A} v1`);
  const a = await pushImage(upstream, `test/${A}`, "v1", { ...image, gzipLevel: 1, layers: [...image.layers!, { "/data/big.bin": randomBytes(BIG) }] });
  // Published through the proxy: the targets then name its address as the apps' registry.
  const pub = await Publisher.create({ ...asTestGateway(gw), url: `https://127.0.0.1:${proxy.port}`, host: `127.0.0.1:${proxy.port}` }, upstream, { [`${A}/docker-compose.yml`]: httpdCompose(a, 18095) });
  await pub.publish(1);
  work = await tempDir("preload-progress-");
  fc = await factoryConfig(preloadConfig());
}, 120_000);

afterAll(async () => {
  await Promise.all([gw?.stop(), upstream?.stop(), proxy?.close()]);
});

/** Through the proxy: the gateway's URL there is the one its targets name for the registry. */
const fromGateway = () => ["--factory-config", fc, "--ref", "refs/heads/master", "--server", `https://127.0.0.1:${proxy.port}`, "--token", gw.adminToken, "--hwid", "amd64-linux"];

/** The progress lines' sizes, in bytes: `fetching blobs: 3.0 MiB of 8.0 MiB, 0 of 4 placed`. */
function fetchingLines(text: string): { sofar: number; total: number }[] {
  const units: Record<string, number> = { B: 1, KiB: 1 << 10, MiB: 1 << 20, GiB: 1 << 30 };
  return [...text.matchAll(/fetching blobs: ([\d.]+) (B|KiB|MiB|GiB) of ([\d.]+) (B|KiB|MiB|GiB), \d+ of \d+ placed/g)].map((m) => ({
    sofar: Number(m[1]) * units[m[2]!]!,
    total: Number(m[3]) * units[m[4]!]!,
  }));
}

describe("preload shows a big layer's progress while it downloads", () => {
  test("on a terminal: one line rewritten in place, cleared before each blob's line", async () => {
    proxy.inject({ kind: "stall", afterBytes: 2 << 20, stallMs: 1_000 });
    const out = join(work, "tty");
    const cmd = [process.execPath, join(ROOT, "preload/main.ts"), ...fromGateway(), "--out", out].map((a) => `'${a}'`).join(" ");
    // script(1) gives preload a terminal for stdout and stderr, and copies what it wrote.
    const p = Bun.spawn(["script", "-qefc", cmd, "/dev/null"], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
    const [text, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
    expect(code, text).toBe(0);
    const inPlace = fetchingLines(text.split("\r\x1b[K").filter((part) => part.startsWith("fetching blobs:")).join("\n"));
    expect(inPlace.some((l) => l.sofar >= 2 << 20 && l.sofar < l.total && l.total >= BIG), text).toBe(true);
    // Never a progress line ended as a line of its own: each is cleared, and what follows starts clean.
    expect(text).not.toMatch(/fetching blobs:[^\r\n]*\r?\n/);
    expect(text).toMatch(/\r\x1b\[K\[\d+\/\d+\] layer [0-9a-f]{12} 8\.\d MiB fetched/);
  }, 120_000);

  test("in a log: a plain line after 10 s in the middle of the blob; with --json stdout is JSON alone", async () => {
    proxy.inject({ kind: "stall", afterBytes: 2 << 20, stallMs: 11_000 });
    const r = await preload([...fromGateway(), "--out", join(work, "log"), "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stderr.split("\n").filter((l) => l.startsWith("fetching blobs:"));
    expect(lines.length, r.stderr).toBeGreaterThan(0);
    expect(r.stderr).not.toContain("\x1b");
    const [first] = fetchingLines(lines[0]!);
    expect(first!.sofar, lines[0]).toBeGreaterThanOrEqual(2 << 20);
    expect(first!.sofar, lines[0]).toBeLessThan(first!.total);
    expect(JSON.parse(r.stdout)).toMatchObject({ target: expect.any(String), format: "dir" });
  }, 120_000);
});

describe("preload is never silent for long", () => {
  test("a gateway gone mid-download: a retrying line with the time so far, then the download resumes", async () => {
    proxy.inject({ kind: "down", afterBytes: 2 << 20, downMs: 12_000 });
    const r = await preload([...fromGateway(), "--out", join(work, "retry")]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^retrying layer [0-9a-f]{12}: .+ \(\d+ s so far without data; giving up after 60 s\)$/m);
  }, 120_000);

  test("a long step without bytes to count (a base tar that takes its time) says how long it has run every 10 s", async () => {
    const dir = await tempDir("preload-slow-base-");
    const fifo = join(dir, "base.tar");
    await run(["mkfifo", fifo]);
    const p = Bun.spawn([process.execPath, join(ROOT, "preload/main.ts"), ...fromGateway(), "--base", fifo, "--out", join(dir, "img")], { stdout: "pipe", stderr: "pipe" });
    let err = "";
    const reader = p.stderr.getReader();
    // Stopped after 25 s whatever it said: the read below then ends.
    const stop = setTimeout(() => p.kill("SIGINT"), 25_000);
    while (!/layering onto base .*: 1\d s so far/.test(err)) {
      const { value, done } = await reader.read();
      if (done) break;
      err += new TextDecoder().decode(value);
    }
    clearTimeout(stop);
    p.kill("SIGINT");
    await p.exited;
    expect(err).toContain(`layering onto base ${fifo}\n`);
    expect(err).toMatch(new RegExp(`layering onto base ${fifo}: 1\\d s so far`));
  }, 60_000);

  test("after an interrupted download resumes, fetched counts only the bytes that crossed the network this time", async () => {
    const cache = join(work, "resume-cache");
    proxy.inject({ kind: "stall", afterBytes: 4 << 20, stallMs: 30_000 });
    const p = Bun.spawn([process.execPath, join(ROOT, "preload/main.ts"), ...fromGateway(), "--cache", cache, "--out", join(work, "resume-1")], { stdout: "ignore", stderr: "pipe" });
    // Every partial the killed run left, summed: a small blob whose download the kill
    // also cut short is resumed too, and 'resumed' counts it (CI once saw 155 bytes more).
    const partial = () => {
      try {
        return readdirSync(join(cache, "ingest")).filter((f) => f.endsWith(".partial")).reduce((n, f) => n + statSync(join(cache, "ingest", f)).size, 0);
      } catch {
        return 0;
      }
    };
    const deadline = Date.now() + 20_000;
    while (partial() < 2 << 20 && Date.now() < deadline) await Bun.sleep(100);
    p.kill("SIGINT");
    expect(await p.exited).toBe(130);
    const left = partial();
    expect(left).toBeGreaterThanOrEqual(2 << 20);

    const r = await preload([...fromGateway(), "--cache", cache, "--out", join(work, "resume-2"), "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const result = JSON.parse(r.stdout) as { fetched: number; resumed: number; bytes: number };
    // The rest of the big layer and the small blobs: never the part already in the cache again.
    expect(result.fetched).toBeLessThanOrEqual(result.bytes - left + (64 << 10));
    expect(result.resumed).toBe(left);
    expect(r.stderr).toMatch(/layer [0-9a-f]{12} 8\.\d MiB fetched \([\d.]+ MiB of it resumed from an earlier run\)/);
  }, 120_000);
});
