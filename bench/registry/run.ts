/**
 * Registry benchmark: the embedded registry (gateway/registry) against docker-registry 2.8
 * (CNCF distribution) serving the same blob to the same clients on 127.0.0.1.
 *
 *   bun bench/registry/run.ts            100 MB and 1 GB blobs
 *   bun bench/registry/run.ts --small    10 MB and 100 MB (quick)
 *
 * Servers, each in its own process so its memory is its own: "ours" = the registry sub-app
 * alone on Bun.serve, plain HTTP (serve.ts); "gateway" = the real `gateway serve` (TLS through
 * node:tls, admin token auth), as deployed, when it starts; "peer" = docker-registry, plain HTTP.
 * Per blob size: upload and download throughput with curl and Bun fetch (best of 3 rounds,
 * servers alternating, after `sync`), `curl file://` of the same file as the machine's bound,
 * peak RSS (VmHWM, reset through /proc/PID/clear_refs before each phase), and an image pull:
 * lib/oci `copyRegistryToLayout` vs `skopeo copy docker://... oci:DIR`.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { startDockerRegistry } from "../../test/harness/docker-registry.ts";
import { run, sleep, stopPid, tempDir } from "../../test/harness/tmp.ts";
import { benchArgs } from "../_args.ts";
import { randomFile, startEmbeddedRegistry } from "./_embedded.ts";
import { RegistryClient, copyRegistryToLayout } from "../../lib/oci/index.ts";

const { values } = benchArgs({ options: { small: { type: "boolean", default: false } } });

const MB = 1_000_000;
const small = values.small;
const SIZES = small ? [10 * MB, 100 * MB] : [100 * MB, 1000 * MB];
const RUNS = 3;
const REPO_ROOT = join(import.meta.dir, "..", "..");

interface Server {
  name: "ours" | "gateway" | "peer";
  url: string;
  host: string;
  pid: number;
  /** Auth header, if the server needs one. */
  headers: Record<string, string>;
  /** CA PEM file for TLS servers. */
  caFile?: string;
  token?: string;
  stop(): Promise<void>;
}

const log = (line: string) => console.error(line);

/** The embedded registry alone in its own process. */
async function startOurs(): Promise<Server> {
  const { url, pid } = await startEmbeddedRegistry(await tempDir("bench-ours-"));
  return { name: "ours", url, host: url.replace("http://", ""), pid, headers: {}, stop: () => stopPid(pid) };
}

/** `gateway serve` on a fresh data dir; undefined (with a log line) if it does not come up. */
async function startGateway(): Promise<Server | undefined> {
  const data = await tempDir("bench-gateway-");
  const logFile = join(data, "serve.log");
  const proc = Bun.spawn({
    cmd: [process.execPath, join(REPO_ROOT, "gateway", "main.ts"), "serve", "--data", data, "--listen", "127.0.0.1:0"],
    stdout: Bun.file(logFile),
    stderr: Bun.file(logFile),
  });
  const info = join(data, "serve.json");
  const deadline = Date.now() + 30_000;
  while (!existsSync(info)) {
    if (Date.now() > deadline || proc.exitCode !== null) {
      log(`gateway did not start; skipping its column (${logFile})`);
      await stopPid(proc.pid);
      return undefined;
    }
    await sleep(100);
  }
  const url = (JSON.parse(readFileSync(info, "utf8")) as { url: string }).url;
  const token = readFileSync(join(data, "admin-token"), "utf8").trim();
  return {
    name: "gateway",
    url,
    host: new URL(url).host,
    pid: proc.pid,
    headers: { Authorization: `Bearer ${token}` },
    caFile: join(data, "pki", "ca.pem"),
    token,
    stop: () => stopPid(proc.pid),
  };
}

async function startPeer(): Promise<Server> {
  const r = await startDockerRegistry();
  return { name: "peer", url: r.url, host: r.host, pid: r.pid, headers: {}, stop: r.stop };
}

function fetchOpts(s: Server, init: RequestInit = {}): RequestInit {
  return { ...init, headers: { ...s.headers, ...(init.headers as Record<string, string>) }, ...(s.caFile ? { tls: { ca: readFileSync(s.caFile, "utf8") } } : {}) };
}

async function upload(s: Server, repo: string, body: Blob | Uint8Array, digest: string): Promise<void> {
  const post = await fetch(`${s.url}/v2/${repo}/blobs/uploads/`, fetchOpts(s, { method: "POST" }));
  if (post.status !== 202) throw new Error(`Cannot start upload on ${s.name}: ${post.status} ${await post.text()}`);
  const loc = new URL(post.headers.get("location")!, s.url);
  loc.searchParams.set("digest", digest);
  const put = await fetch(loc, fetchOpts(s, { method: "PUT", body, headers: { "Content-Type": "application/octet-stream" } }));
  if (put.status !== 201) throw new Error(`Cannot upload to ${s.name}: ${put.status} ${await put.text()}`);
}

async function pushManifest(s: Server, repo: string, tag: string, layer: { digest: string; size: number }, cfg: Uint8Array, cfgDigest: string): Promise<void> {
  await upload(s, repo, cfg, cfgDigest);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: cfgDigest, size: cfg.length },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: layer.digest, size: layer.size }],
  });
  const res = await fetch(`${s.url}/v2/${repo}/manifests/${tag}`, fetchOpts(s, { method: "PUT", body: manifest, headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" } }));
  if (res.status !== 201) throw new Error(`Cannot push manifest to ${s.name}: ${res.status} ${await res.text()}`);
}

function vm(pid: number, key: "VmHWM" | "VmRSS"): number {
  const m = new RegExp(`${key}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : NaN;
}
function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, "5");
}

async function curlMBps(url: string, s?: Server): Promise<number> {
  const extra = s ? [...Object.entries(s.headers).flatMap(([k, v]) => ["-H", `${k}: ${v}`]), ...(s.caFile ? ["--cacert", s.caFile] : [])] : [];
  const { stdout } = await run(["curl", "-sf", ...extra, "-o", "/dev/null", "-w", "%{size_download} %{time_total}", url]);
  const [bytes, secs] = stdout.trim().split(" ").map(Number);
  return bytes! / MB / secs!;
}

async function fetchMBps(s: Server, url: string, size: number): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(url, fetchOpts(s));
  let n = 0;
  for await (const chunk of res.body!) n += chunk.byteLength;
  const secs = (performance.now() - t0) / 1000;
  if (n !== size) throw new Error(`Cannot benchmark ${url}: got ${n} bytes, expected ${size}`);
  return n / MB / secs;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

async function skopeoPull(s: Server, repo: string, dest: string): Promise<void> {
  const args = ["skopeo", "--insecure-policy", "copy"];
  if (s.caFile) {
    const certDir = await tempDir("bench-certs-");
    writeFileSync(join(certDir, "ca.crt"), readFileSync(s.caFile));
    args.push("--src-cert-dir", certDir, "--src-creds", `ci:${s.token}`);
  } else {
    args.push("--src-tls-verify=false");
  }
  await run([...args, `docker://${s.host}/${repo}:latest`, `oci:${dest}:latest`]);
}

type Figures = Partial<Record<Server["name"], number>>;
interface Row {
  what: string;
  v: Figures;
  unit: string;
}

function table(rows: Row[], names: Server["name"][]): string {
  const fmt = (v: number | undefined) => (v !== undefined && Number.isFinite(v) ? (v >= 100 ? v.toFixed(0) : v.toFixed(1)) : "-");
  const ratio = (a?: number, b?: number) => (a !== undefined && b !== undefined && Number.isFinite(a / b) ? (a / b).toFixed(2) : "-");
  const label: Record<Server["name"], string> = { ours: "ours", gateway: "gateway(TLS)", peer: "docker-registry" };
  const head = ["measure", ...names.map((n) => label[n]), "unit", "ours/peer", ...(names.includes("gateway") ? ["gw/peer"] : [])];
  const body = rows.map((r) => [
    r.what,
    ...names.map((n) => fmt(r.v[n])),
    r.unit,
    ratio(r.v.ours, r.v.peer),
    ...(names.includes("gateway") ? [ratio(r.v.gateway, r.v.peer)] : []),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}

async function main(): Promise<void> {
  const dir = await tempDir("bench-registry-");
  mkdirSync(dir, { recursive: true });
  const servers: Server[] = [await startOurs()];
  const gw = await startGateway();
  if (gw) servers.push(gw);
  servers.push(await startPeer());
  const names = servers.map((s) => s.name);
  const each = (f: (s: Server) => number): Figures => Object.fromEntries(servers.map((s) => [s.name, f(s)]));
  const rows: Row[] = [{ what: "idle RSS after start", v: each((s) => vm(s.pid, "VmRSS") / MB), unit: "MB" }];
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

      const up: Figures = {};
      const upRss: Figures = {};
      for (const s of servers) {
        log(`uploading ${label} to ${s.name}`);
        await run(["sync"]);
        resetPeak(s.pid);
        up[s.name] = size / MB / (await timed(() => upload(s, repo, Bun.file(file), digest)));
        await pushManifest(s, repo, "latest", { digest, size }, cfg, cfgDigest);
        upRss[s.name] = vm(s.pid, "VmHWM") / MB;
      }
      rows.push({ what: `${label}: upload (Bun fetch PUT)`, v: up, unit: "MB/s" });
      rows.push({ what: `${label}: peak RSS while receiving`, v: upRss, unit: "MB" });

      // Flush the uploads' dirty pages, then alternate servers round by round so none is
      // measured while the disk is busy with another's writes.
      await run(["sync"]);
      for (const s of servers) resetPeak(s.pid);
      const blobUrl = (s: Server) => `${s.url}/v2/${repo}/blobs/${digest}`;
      const curl: Figures = {};
      const bun: Figures = {};
      log(`downloading ${label} (${RUNS} rounds, servers alternating)`);
      for (let i = 0; i < RUNS; i++) {
        for (const s of servers) curl[s.name] = Math.max(curl[s.name] ?? 0, await curlMBps(blobUrl(s), s));
        for (const s of servers) bun[s.name] = Math.max(bun[s.name] ?? 0, await fetchMBps(s, blobUrl(s), size));
      }
      rows.push({ what: `${label}: curl download`, v: curl, unit: "MB/s" });
      rows.push({ what: `${label}: Bun fetch download`, v: bun, unit: "MB/s" });
      rows.push({ what: `${label}: peak RSS while serving`, v: each((s) => vm(s.pid, "VmHWM") / MB), unit: "MB" });
      let bound = 0;
      for (let i = 0; i < RUNS; i++) bound = Math.max(bound, await curlMBps(`file://${file}`));
      bounds.push(`${label}: curl file:// (machine bound) ${bound.toFixed(0)} MB/s`);

      // Image pull: lib/oci vs skopeo, from each server.
      const lib: Figures = {};
      const sk: Figures = {};
      for (const s of servers) {
        log(`pulling the ${label} image from ${s.name} with lib/oci and skopeo`);
        const client = new RegistryClient({
          registry: s.host,
          scheme: s.caFile ? "https" : "http",
          ...(s.token ? { auth: { token: s.token } } : {}),
          ...(s.caFile ? { tls: { ca: readFileSync(s.caFile, "utf8") } } : {}),
        });
        const libDir = join(dir, `lib-${s.name}`);
        const skDir = join(dir, `skopeo-${s.name}`);
        await run(["sync"]);
        lib[s.name] = size / MB / (await timed(() => copyRegistryToLayout(client, repo, "latest", libDir)));
        await run(["sync"]);
        sk[s.name] = size / MB / (await timed(() => skopeoPull(s, repo, skDir)));
        await rm(libDir, { recursive: true, force: true });
        await rm(skDir, { recursive: true, force: true });
      }
      rows.push({ what: `${label}: image pull, lib/oci`, v: lib, unit: "MB/s" });
      rows.push({ what: `${label}: image pull, skopeo`, v: sk, unit: "MB/s" });
      rows.push({ what: `${label}: pull from ours, lib/oci|skopeo`, v: { ours: lib.ours, peer: sk.ours }, unit: "MB/s" });
      await rm(file, { force: true });
    }
    const load = readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
    console.log(`Registry benchmark (${small ? "--small" : "full"}; best of ${RUNS}; docker-registry ${await peerVersion()}; 127.0.0.1; load average ${load})`);
    console.log(table(rows, names));
    for (const b of bounds) console.log(b);
    console.log('"pull from ours, lib/oci|skopeo" row: ours column = lib/oci, docker-registry column = skopeo, both pulling from ours.');
  } finally {
    for (const s of servers) await s.stop();
  }
}

async function peerVersion(): Promise<string> {
  const r = await run(["docker-registry", "--version"], { allowFail: true });
  return (r.stdout.trim().split(" ").pop() ?? "?").replace(/\+.*/, "");
}

await main();
