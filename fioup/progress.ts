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
  const t0 = Date.now();
  const at = () => `[${((Date.now() - t0) / 1000).toFixed(1)}s]`;
  return {
    onStep(name, u) {
      if (name !== "Resuming") write(`${at()} ${name} ${u.toTarget} (update ${u.id}, ${u.state})\n`);
    },
    onInfo(line) {
      write(line + "\n");
    },
    onBlobProgress({ digest, done, total, index, count }) {
      const short = digest.slice(7, 19);
      if (tty) {
        const now = Date.now();
        if (done < total && now - lastDraw < 100) return;
        lastDraw = now;
        const width = 30;
        const filled = total ? Math.round((done / total) * width) : width;
        const pct = total ? Math.floor((done / total) * 100) : 100;
        write(`\r[${index}/${count}] ${short} [${"#".repeat(filled)}${" ".repeat(width - filled)}] ${String(pct).padStart(3)}% ${done}/${total}`);
        if (done >= total) write("\n");
      } else if (done >= total) {
        write(`[${index}/${count}] fetched ${digest} ${fmtBytes(total)}\n`);
      }
    },
  };
}
