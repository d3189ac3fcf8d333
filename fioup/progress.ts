/**
 * Download progress on stderr: a redrawn bar on a terminal, one plain line per
 * committed blob otherwise (logs stay readable). Commands own it; steps only
 * call hooks.
 *
 * @module
 */
import type { UpdateHooks } from "./update/context.ts";
import { fmtBytes } from "./update/space.ts";

export function progressHooks(write: (s: string) => void = (s) => process.stderr.write(s), tty = !!process.stderr.isTTY): UpdateHooks {
  let lastDraw = 0;
  const blobs = new Map<string, { done: number; total: number }>();
  const t0 = Date.now();
  const at = () => `[${((Date.now() - t0) / 1000).toFixed(1)}s]`;
  return {
    onStep(name, u) {
      if (name !== "Resuming") write(`${at()} ${name} ${u.toTarget} (update ${u.id}, ${u.state})\n`);
    },
    onInfo(line) {
      write(line + "\n");
    },
    onBlobProgress({ digest, done, total, count }) {
      // Several blobs download at once: show the sum.
      blobs.set(digest, { done, total });
      let sumDone = 0;
      let sumTotal = 0;
      let committed = 0;
      for (const b of blobs.values()) {
        sumDone += b.done;
        sumTotal += b.total;
        if (b.done >= b.total) committed++;
      }
      if (tty) {
        const now = Date.now();
        const finished = committed === count;
        if (!finished && now - lastDraw < 100) return;
        lastDraw = now;
        const width = 30;
        const frac = sumTotal ? sumDone / sumTotal : 1;
        const filled = Math.round(frac * width);
        write(`\r[${committed}/${count} blobs] [${"#".repeat(filled)}${" ".repeat(width - filled)}] ${String(Math.floor(frac * 100)).padStart(3)}% ${(sumDone / 1048576).toFixed(1)} MiB`);
        if (finished) write("\n");
      } else if (done >= total) {
        write(`[${committed}/${count}] fetched ${digest} ${fmtBytes(total)}\n`);
      }
    },
  };
}
