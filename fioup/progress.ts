/**
 * Download progress on stderr: a redrawn bar on a terminal, one plain line per
 * committed blob otherwise (logs stay readable). Commands own it; steps only
 * call hooks.
 *
 * @module
 */
import type { UpdateHooks } from "./update/context.ts";
import { sizeText } from "../lib/cli/bytes.ts";

/** The hooks, and `endLine()`: ends a bar left mid-line, so what is printed next (a log line, an error) starts on its own line. */
export type ProgressHooks = UpdateHooks & { endLine(): void };

export function progressHooks(write: (s: string) => void = (s) => process.stderr.write(s), tty = !!process.stderr.isTTY): ProgressHooks {
  let lastDraw = 0;
  // A bar is drawn without its newline until the fetch ends; anything else written meanwhile
  // (a delta refused, Ctrl-C's message) would otherwise be glued to its end.
  let barOpen = false;
  const endLine = () => {
    if (barOpen) write("\n");
    barOpen = false;
  };
  const blobs = new Map<string, number>();
  let nCommitted = 0;
  // Seconds since the update began: the daemon makes one hook set for its whole life, so the
  // clock restarts with each update, the first included, rather than counting from the daemon's start.
  let t0 = Date.now();
  let updateId: string | undefined;
  const at = () => `[${((Date.now() - t0) / 1000).toFixed(1)}s]`;
  return {
    endLine,
    onStep(name, u) {
      if (u.id !== updateId) {
        t0 = Date.now();
        updateId = u.id;
      }
      if (name === "resume") return;
      endLine();
      write(`${at()} ${name} ${u.toTarget} (update ${u.id}, ${u.state})\n`);
    },
    onInfo(line) {
      endLine();
      write(line + "\n");
    },
    onBlobProgress({ digest, done, total, count, committed, fetchTotal, deltaBytes }) {
      // Several blobs download at once: show the sum over the whole fetch.
      blobs.set(digest, committed ? total : done);
      if (committed) nCommitted++;
      if (tty) {
        const now = Date.now();
        const finished = nCommitted === count;
        if (!finished && now - lastDraw < 100) return;
        lastDraw = now;
        let sum = 0;
        for (const n of blobs.values()) sum += n;
        const frac = fetchTotal ? Math.min(1, sum / fetchTotal) : 1;
        const width = 30;
        const filled = Math.round(frac * width);
        write(
          `\r[${nCommitted}/${count} blobs] [${"#".repeat(filled)}${" ".repeat(width - filled)}] ${String(Math.floor(frac * 100)).padStart(3)}% ` +
            `${(sum / 1048576).toFixed(1)}/${(fetchTotal / 1048576).toFixed(1)} MiB`,
        );
        barOpen = !finished;
        if (finished) write("\n");
      } else if (committed) {
        // A layer rebuilt from a delta says so: "fetched 9.2 MiB" would read as the whole layer on the wire.
        const how = deltaBytes === undefined ? "fetched" : "rebuilt";
        const from = deltaBytes === undefined ? "" : ` from a delta of ${sizeText(deltaBytes, { exact: true })}`;
        write(`[${nCommitted}/${count}] ${how} ${digest} ${sizeText(total, { exact: true })}${from}\n`);
      }
    },
  };
}
