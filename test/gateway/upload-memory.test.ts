/**
 * Issue 3: a large registry upload through the real `gateway serve` (TLS transport) must stream
 * to disk with backpressure, not pile up in the gateway's memory. 300 MB go in with a declared
 * Content-Length and again chunked; the gateway's peak RSS (VmHWM) stays bounded and the blob
 * lands with the right digest.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { open, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type GatewayHandle, startGateway } from "../harness/gateway.ts";
import { tempDir } from "../harness/tmp.ts";

const MB = 1_000_000;
const SIZE = 300 * MB;
const BOUND_KB = 250 * 1024;

let gw: GatewayHandle;
let dir: string;
let file: string;
let digest: string;
let caFile: string;

/** Peak resident set of a process, in kB. */
async function vmHwm(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  return Number(/VmHWM:\s+(\d+)/.exec(status)![1]);
}

beforeAll(async () => {
  dir = await tempDir("gw-upload-mem-");
  gw = await startGateway();
  caFile = join(dir, "ca.pem");
  await writeFile(caFile, gw.caPem);
  // Incompressible data, written in 1 MiB chunks.
  file = join(dir, "blob");
  const fh = await open(file, "w");
  const hash = createHash("sha256");
  const chunk = new Uint8Array(1 << 20);
  for (let left = SIZE; left > 0; left -= chunk.length) {
    for (let o = 0; o < chunk.length; o += 65536) crypto.getRandomValues(chunk.subarray(o, o + 65536));
    const part = chunk.subarray(0, Math.min(left, chunk.length));
    hash.update(part);
    await fh.write(part);
  }
  await fh.close();
  digest = `sha256:${hash.digest("hex")}`;
});

afterAll(async () => {
  await gw?.stop();
});

async function curl(args: string[], stdin?: string): Promise<{ code: number; out: string }> {
  const proc = Bun.spawn(["curl", "-sS", "--cacert", caFile, "-H", `authorization: Bearer ${gw.adminToken}`, ...args], {
    stdin: stdin ? Bun.file(stdin) : "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err, code] = [await new Response(proc.stdout).text(), await new Response(proc.stderr).text(), await proc.exited];
  if (code !== 0) throw new Error(`curl ${args.join(" ")}: exit ${code}: ${err}`);
  return { code, out };
}

test("a 300 MB upload with Content-Length streams through the gateway in bounded memory", async () => {
  // Bun's fetch sends a file body with its Content-Length.
  const res = await gw.adminFetch(`/v2/main/mem/blobs/uploads/?digest=${digest}`, { method: "POST", body: Bun.file(file) });
  expect(res.status).toBe(201);
  const head = await gw.adminFetch(`/v2/main/mem/blobs/${digest}`, { method: "HEAD" });
  expect(head.status).toBe(200);
  expect(head.headers.get("content-length")).toBe(String(SIZE));
  const peak = await vmHwm(gw.pid);
  console.error(`gateway VmHWM after a ${SIZE / MB} MB upload: ${(peak / 1024).toFixed(0)} MB`);
  expect(peak).toBeLessThan(BOUND_KB);
});

test("a 300 MB chunked upload (no declared length) streams in bounded memory too", async () => {
  // stdin makes curl send Transfer-Encoding: chunked.
  const { out } = await curl(["-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-T", "-", `${gw.url}/v2/main/mem2/blobs/uploads/?digest=${digest}`], file);
  expect(out).toBe("201");
  const res = await gw.adminFetch(`/v2/main/mem2/blobs/${digest}`, { method: "HEAD" });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-length")).toBe(String(SIZE));
  expect(await vmHwm(gw.pid)).toBeLessThan(BOUND_KB);
});
