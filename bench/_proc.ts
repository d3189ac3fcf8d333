/**
 * Memory of a process the benchmarks watch, from /proc/PID/status: resident now (VmRSS) and the
 * high-water mark (VmHWM), in kB; zeros once the process is gone. The one reader the benchmarks
 * share.
 */
import { readdirSync, readFileSync } from "node:fs";

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

/**
 * CPU seconds and sleeps (voluntary context switches) a process's threads have had so far, grouped:
 * the main thread (the event loop), Bun Workers (named "Worker": the gateway's SQLite writer) and
 * the rest (GC, JIT, allocator threads). Run time from /proc/PID/task/TID/schedstat, exact where
 * /proc stat counts 4 ms ticks; a thread gone meanwhile is left out. On a VM a sleep and the wake
 * that ends it cost tens of µs of CPU, so the sleeps per request explain part of a gap.
 */
export function threadCpu(pid: number): Record<"main" | "worker" | "other", { s: number; sleeps: number }> {
  const groups = { main: { s: 0, sleeps: 0 }, worker: { s: 0, sleeps: 0 }, other: { s: 0, sleeps: 0 } };
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return groups;
  }
  for (const tid of tids)
    try {
      const dir = `/proc/${pid}/task/${tid}`;
      const stat = readFileSync(`${dir}/stat`, "utf8");
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const g = groups[tid === String(pid) ? "main" : name === "Worker" ? "worker" : "other"];
      g.s += Number(readFileSync(`${dir}/schedstat`, "utf8").split(" ")[0]) / 1e9;
      g.sleeps += Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`${dir}/status`, "utf8"))?.[1] ?? 0);
    } catch {
      // the thread ended meanwhile
    }
  return groups;
}
