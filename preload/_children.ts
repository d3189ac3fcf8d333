/**
 * The tools preload runs (cp, tar, mkfs.ext4, the --fioup binary asked its --version): each is registered to stop with preload
 * (lib/cli/interrupt.ts), so a Ctrl-C or SIGTERM sent to preload alone stops them too instead of
 * leaving them writing into a removed work folder.
 *
 * @module
 */
import { stopsWithCommand } from "../lib/cli/interrupt.ts";

/**
 * Runs `cmd` to its end, or until `o.timeoutMs` passes (then it is killed and `timedOut` is true);
 * returns its exit code, its stdout (trimmed) and the last lines of its stderr.
 */
export async function runTool(cmd: string[], o: { timeoutMs?: number } = {}): Promise<{ code: number; stdout: string; stderr: string; timedOut: boolean }> {
  const proc = stopsWithCommand(Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe" }));
  let timedOut = false;
  const timer = o.timeoutMs === undefined ? undefined : setTimeout(() => ((timedOut = true), proc.kill("SIGKILL")), o.timeoutMs);
  try {
    const [code, stdout, stderr] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
    return { code, stdout: stdout.trim(), stderr: stderr.trim().split("\n").slice(-3).join(" "), timedOut };
  } finally {
    clearTimeout(timer);
  }
}
