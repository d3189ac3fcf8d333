/**
 * Memory of a process the benchmarks watch, from /proc/PID/status: resident now (VmRSS) and the
 * high-water mark (VmHWM), in kB; zeros once the process is gone. The one reader the benchmarks
 * share.
 */
import { readFileSync } from "node:fs";

export function rssKb(pid: number): { rss: number; hwm: number } {
  try {
    const s = readFileSync(`/proc/${pid}/status`, "utf8");
    const get = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? 0);
    return { rss: get("VmRSS"), hwm: get("VmHWM") };
  } catch {
    return { rss: 0, hwm: 0 };
  }
}

/** CPU seconds (user + system, all threads) a process has used so far, from /proc/PID/stat; NaN once it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return NaN;
  }
}

/** Page faults a process has taken so far (minor: the page was in memory; major: read from disk), from /proc/PID/stat; NaN once it is gone. */
export function pageFaults(pid: number): { minor: number; major: number } {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
    return { minor: Number(f[7]), major: Number(f[9]) };
  } catch {
    return { minor: NaN, major: NaN };
  }
}
