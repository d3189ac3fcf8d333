/** Runs `bun gateway/main.ts serve` as its own process (for crash tests) and waits for its listening line. */
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..", "..");

export interface SpawnedGateway {
  url: string;
  pid: number;
  proc: ReturnType<typeof Bun.spawn>;
  stderr(): string;
}

export async function spawnGateway(dataDir: string, args: string[] = []): Promise<SpawnedGateway> {
  const proc = Bun.spawn([process.execPath, join(ROOT, "gateway", "main.ts"), "serve", "--data", dataDir, "--listen", "127.0.0.1:0", ...args], {
    stdout: "ignore",
    stderr: "pipe",
    cwd: ROOT,
  });
  let text = "";
  const reader = (proc.stderr as ReadableStream<Uint8Array>).getReader();
  const dec = new TextDecoder();
  const deadline = Date.now() + 30_000;
  let url: string | undefined;
  while (!url) {
    const chunk = await Promise.race([reader.read(), Bun.sleep(Math.max(0, deadline - Date.now())).then(() => "timeout" as const)]);
    if (chunk === "timeout" || chunk.done) {
      proc.kill("SIGKILL");
      throw new Error(`gateway did not start: ${text}`);
    }
    text += dec.decode(chunk.value);
    url = /gateway listening on (https:\/\/\S+)/.exec(text)?.[1];
  }
  // Keep draining stderr so the child never blocks on a full pipe.
  void (async () => {
    for (;;) {
      const c = await reader.read().catch(() => ({ done: true as const, value: undefined }));
      if (c.done) break;
      text += dec.decode(c.value);
    }
  })();
  return { url, pid: proc.pid, proc, stderr: () => text };
}
