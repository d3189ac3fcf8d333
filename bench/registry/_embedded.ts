/**
 * What the registry benchmarks share (bench/registry/run.ts, bench/fioup/pull.ts): the embedded
 * registry started alone in its own process (serve.ts), and a random blob written to a file with
 * its digest, so a run pushes bytes no cache or compressor has seen.
 *
 * @module
 */
import { open } from "node:fs/promises";
import { join } from "node:path";
import { waitLine } from "../_spawn.ts";

/** serve.ts on `root` in its own process: its URL (`http://127.0.0.1:PORT`) and PID. @throws {Error} If it exits before listening. */
export async function startEmbeddedRegistry(root: string): Promise<{ url: string; pid: number }> {
  const proc = Bun.spawn({ cmd: [process.execPath, join(import.meta.dir, "serve.ts"), root], stdout: "inherit", stderr: "pipe" });
  try {
    return { url: await waitLine(proc, /listening (\S+)/), pid: proc.pid };
  } catch (err) {
    throw new Error(`Cannot start the embedded registry: ${(err as Error).message}`);
  }
}

/** Writes `size` random bytes to `path`; returns their sha256 digest. */
export async function randomFile(path: string, size: number): Promise<string> {
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
