/**
 * The tools preload runs (cp, tar, mkfs.ext4): each is registered to stop with preload
 * (lib/cli/interrupt.ts), so a Ctrl-C or SIGTERM sent to preload alone stops them too instead of
 * leaving them writing into a removed work folder.
 *
 * @module
 */
import { stopsWithCommand } from "../lib/cli/interrupt.ts";

/** Runs `cmd` to its end; returns its exit code and the last lines of its stderr. */
export async function runTool(cmd: string[]): Promise<{ code: number; stderr: string }> {
  const proc = stopsWithCommand(Bun.spawn(cmd, { stdin: "ignore", stdout: "ignore", stderr: "pipe" }));
  const [code, stderr] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  return { code, stderr: stderr.trim().split("\n").slice(-3).join(" ") };
}
