/**
 * The tools preload runs (cp, tar, mkfs.ext4), known while they run, so a Ctrl-C or SIGTERM sent
 * to preload alone stops them too instead of leaving them writing into a removed work folder.
 *
 * @module
 */
import type { Subprocess } from "bun";

const running = new Set<Subprocess>();

/** Runs `cmd` to its end; returns its exit code and the last lines of its stderr. */
export async function runTool(cmd: string[]): Promise<{ code: number; stderr: string }> {
  const proc = Bun.spawn(cmd, { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  running.add(proc);
  try {
    const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
    return { code, stderr: stderr.trim().split("\n").slice(-3).join(" ") };
  } finally {
    running.delete(proc);
  }
}

/** Stops every tool still running (SIGKILL: preload is on its way out). */
export function killTools(): void {
  for (const p of running) p.kill("SIGKILL");
}
