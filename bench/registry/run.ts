/**
 * Registry benchmark: the embedded registry (gateway/registry, in its own Bun process) against
 * docker-registry 2.8 (CNCF distribution) serving the same blob to the same clients on
 * 127.0.0.1.
 *
 *   bun bench/registry/run.ts            100 MB and 1 GB blobs
 *   bun bench/registry/run.ts --small    10 MB and 100 MB (quick)
 *
 * Measures, per blob size: download throughput with curl and with Bun fetch (best of N runs),
 * `curl file://` of the same file as the machine's bound, the servers' peak RSS while serving
 * (VmHWM, reset after the upload via /proc/PID/clear_refs) and over the whole run, and an image
 * pull: lib/oci `copyRegistryToLayout` vs `skopeo copy docker://... oci:DIR`.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { open, rm } from "node:fs/promises";
import { join } from "node:path";
import { startDockerRegistry } from "../../test/harness/docker-registry.ts";
import { run, stopPid, tempDir } from "../../test/harness/tmp.ts";
import { RegistryClient, copyRegistryToLayout } from "../../lib/oci/index.ts";

const MB = 1_000_000;
const small = process.argv.includes("--small");
const SIZES = small ? [10 * MB, 100 * MB] : [100 * MB, 1000 * MB];
const RUNS = small ? 3 : 2;

interface Server {
  name: string;
  url: string;
  host: string;
  pid: number;
  stop(): Promise<void>;
}

const log = (line: string) => console.error(line);

/** Writes `size` random bytes to `path` in 1 MiB chunks (flat memory); returns its digest. */
async function randomFile(path: string, size: number): Promise<string> {
  const fh = await open(path, "w");
  const hasher = new Bun.CryptoHasher("sha256");
  const chunk = new Uint8Array(1 << 20);
  for (let left = size; left > 0; ) {
    const n = Math.min(left, chunk.length);
    for (let o = 0; o < n; o += 65536) crypto.getRandomValues(chunk.subarray(o, Math.min(n, o + 65536)));
    const part = chunk.subarray(0, n);
    await fh.write(part);
    hasher.update(part);
    left -= n;
  }
  await fh.close();
  return `sha256:${hasher.digest("hex")}`;
}

async function startOurs(): Promise<Server> {
  const root = await tempDir("bench-ours-");
  const proc = Bun.spawn({ cmd: [process.execPath, join(import.meta.dir, "serve.ts"), root], stdout: "pipe", stderr: "inherit" });
  const reader = proc.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("Cannot start the embedded registry: it exited before listening");
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const url = /listening (\S+)/.exec(text)![1]!;
  return { name: "ours", url, host: url.replace("http://", ""), pid: proc.pid, stop: () => stopPid(proc.pid) };
}

async function startPeer(): Promise<Server> {
  const r = await startDockerRegistry();
  return { name: "docker-registry", url: r.url, host: r.host, pid: r.pid, stop: r.stop };
}

/** POST + PUT ?digest= with the file streamed as the body. */
async function pushBlob(s: Server, repo: string, file: string, digest: string): Promise<void> {
  const post = await fetch(`${s.url}/v2/${repo}/blobs/uploads/`, { method: "POST" });
  if (post.status !== 202) throw new Error(`Cannot start upload on ${s.name}: ${post.status} ${await post.text()}`);
  const loc = new URL(post.headers.get("location")!, s.url);
  loc.searchParams.set("digest", digest);
  const put = await fetch(loc, { method: "PUT", body: Bun.file(file), headers: { "Content-Type": "application/octet-stream" } });
  if (put.status !== 201) throw new Error(`Cannot upload to ${s.name}: ${put.status} ${await put.text()}`);
}

async function pushImage(s: Server, repo: string, tag: string, layer: { digest: string; size: number }, cfg: Uint8Array, cfgDigest: string): Promise<void> {
  const c = await fetch(`${s.url}/v2/${repo}/blobs/uploads/`, { method: "POST" });
  const loc = new URL(c.headers.get("location")!, s.url);
  loc.searchParams.set("digest", cfgDigest);
  const put = await fetch(loc, { method: "PUT", body: cfg });
  if (put.status !== 201) throw new Error(`Cannot upload config to ${s.name}: ${put.status}`);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: cfgDigest, size: cfg.length },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: layer.digest, size: layer.size }],
  });
  const res = await fetch(`${s.url}/v2/${repo}/manifests/${tag}`, { method: "PUT", body: manifest, headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" } });
  if (res.status !== 201) throw new Error(`Cannot push manifest to ${s.name}: ${res.status} ${await res.text()}`);
}

function vm(pid: number, key: "VmHWM" | "VmRSS"): number {
  const m = new RegExp(`${key}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : NaN;
}
function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, "5");
}

async function curlMBps(url: string): Promise<number> {
  const { stdout } = await run(["curl", "-sf", "-o", "/dev/null", "-w", "%{size_download} %{time_total}", url]);
  const [bytes, secs] = stdout.trim().split(" ").map(Number);
  return bytes! / MB / secs!;
}

async function fetchMBps(url: string, size: number): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(url);
  let n = 0;
  for await (const chunk of res.body!) n += chunk.byteLength;
  const secs = (performance.now() - t0) / 1000;
  if (n !== size) throw new Error(`Cannot benchmark ${url}: got ${n} bytes, expected ${size}`);
  return n / MB / secs;
}

async function best(fn: () => Promise<number>): Promise<number> {
  let b = 0;
  for (let i = 0; i < RUNS; i++) b = Math.max(b, await fn());
  return b;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

interface Row {
  what: string;
  ours: number;
  peer: number;
  unit: string;
  higherIsBetter: boolean;
}

function table(rows: Row[]): string {
  const fmt = (v: number) => (Number.isFinite(v) ? (v >= 100 ? v.toFixed(0) : v.toFixed(1)) : "-");
  const head = ["measure", "ours", "peer", "unit", "ours/peer"];
  const body = rows.map((r) => [r.what, fmt(r.ours), fmt(r.peer), r.unit, Number.isFinite(r.ours / r.peer) ? (r.ours / r.peer).toFixed(2) : "-"]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}

async function main(): Promise<void> {
  const dir = await tempDir("bench-registry-");
  mkdirSync(dir, { recursive: true });
  const ours = await startOurs();
  const peer = await startPeer();
  const servers = [ours, peer];
  const rows: Row[] = [];
  const bounds: string[] = [];
  const cfg = new TextEncoder().encode('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
  const cfgDigest = `sha256:${new Bun.CryptoHasher("sha256").update(cfg).digest("hex")}`;
  try {
    for (const size of SIZES) {
      const label = size >= 1000 * MB ? `${size / (1000 * MB)} GB` : `${size / MB} MB`;
      const file = join(dir, `blob-${size}`);
      log(`generating ${label} of random data`);
      const digest = await randomFile(file, size);
      const repo = `bench/b${size}`;
      const upload: Record<string, number> = {};
      for (const s of servers) {
        log(`uploading ${label} to ${s.name}`);
        upload[s.name] = size / MB / (await timed(() => pushBlob(s, repo, file, digest)));
        await pushImage(s, repo, "latest", { digest, size }, cfg, cfgDigest);
        resetPeak(s.pid);
      }
      rows.push({ what: `${label}: upload (Bun fetch PUT)`, ours: upload.ours!, peer: upload["docker-registry"]!, unit: "MB/s", higherIsBetter: true });
      const blobUrl = (s: Server) => `${s.url}/v2/${repo}/blobs/${digest}`;
      const res: Record<string, { curl: number; fetch: number; rss: number }> = {};
      for (const s of servers) {
        log(`downloading ${label} from ${s.name}`);
        const curl = await best(() => curlMBps(blobUrl(s)));
        const f = await best(() => fetchMBps(blobUrl(s), size));
        res[s.name] = { curl, fetch: f, rss: vm(s.pid, "VmHWM") };
      }
      rows.push({ what: `${label}: curl download`, ours: res.ours!.curl, peer: res["docker-registry"]!.curl, unit: "MB/s", higherIsBetter: true });
      rows.push({ what: `${label}: Bun fetch download`, ours: res.ours!.fetch, peer: res["docker-registry"]!.fetch, unit: "MB/s", higherIsBetter: true });
      rows.push({ what: `${label}: peak RSS while serving`, ours: res.ours!.rss / MB, peer: res["docker-registry"]!.rss / MB, unit: "MB", higherIsBetter: false });
      const bound = await best(() => curlMBps(`file://${file}`));
      bounds.push(`${label}: curl file:// (machine bound) ${bound.toFixed(0)} MB/s`);

      // Image pull: lib/oci vs skopeo, from each registry.
      const pulls: Record<string, { lib: number; skopeo: number }> = {};
      for (const s of servers) {
        log(`pulling the ${label} image from ${s.name} with lib/oci and skopeo`);
        const client = new RegistryClient({ registry: s.host, scheme: "http" });
        const libDir = join(dir, `lib-${s.name}`);
        const skDir = join(dir, `skopeo-${s.name}`);
        const lib = await timed(() => copyRegistryToLayout(client, repo, "latest", libDir));
        const sk = await timed(() => run(["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", `docker://${s.host}/${repo}:latest`, `oci:${skDir}:latest`]));
        pulls[s.name] = { lib: size / MB / lib, skopeo: size / MB / sk };
        await rm(libDir, { recursive: true, force: true });
        await rm(skDir, { recursive: true, force: true });
      }
      rows.push({ what: `${label}: image pull, lib/oci`, ours: pulls.ours!.lib, peer: pulls["docker-registry"]!.lib, unit: "MB/s", higherIsBetter: true });
      rows.push({ what: `${label}: image pull, skopeo`, ours: pulls.ours!.skopeo, peer: pulls["docker-registry"]!.skopeo, unit: "MB/s", higherIsBetter: true });
      rows.push({ what: `${label}: lib/oci vs skopeo (ours)`, ours: pulls.ours!.lib, peer: pulls.ours!.skopeo, unit: "MB/s", higherIsBetter: true });
      await rm(file, { force: true });
    }
    const overall = servers.map((s) => `${s.name} ${(vm(s.pid, "VmHWM") / MB).toFixed(0)} MB`).join(", ");
    console.log(`Registry benchmark (${small ? "--small" : "full"}; best of ${RUNS}; peer = docker-registry ${await peerVersion()}; 127.0.0.1, plain HTTP)`);
    console.log(table(rows));
    for (const b of bounds) console.log(b);
    console.log(`peak RSS since the last reset (serving + image pulls): ${overall}`);
    console.log("last row: peer column = skopeo copy from our registry");
  } finally {
    for (const s of servers) await s.stop();
  }
}

async function peerVersion(): Promise<string> {
  const r = await run(["docker-registry", "--version"], { allowFail: true });
  return (r.stdout.trim().split(" ").pop() ?? "?").replace(/\+.*/, "");
}

await main();
