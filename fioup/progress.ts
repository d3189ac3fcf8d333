/**
 * Download progress on stderr, drawn on lib/cli/progress.ts's one progress line: on a terminal a
 * bar redrawn in place; in a log (systemd, a file) one plain line per committed blob and, while a
 * large blob is still on its way, the bytes so far every 10 s, so a multi-GB layer is never
 * silent in a device's journal. Commands own it; steps only call hooks.
 *
 * @module
 */
import type { UpdateHooks } from "./update/context.ts";
import { sizeText } from "../lib/cli/bytes.ts";
import { progressLine } from "../lib/cli/progress.ts";

/** The hooks, and `endLine()`: clears a bar left drawn, so what is printed next (a log line, an error) starts on a clean line. */
export type ProgressHooks = UpdateHooks & { endLine(): void };

/** Bundles from this size on show their download (onBundleProgress). */
const BUNDLE_SHOWN_FROM = 1 << 20;

export function progressHooks(write: (s: string) => void = (s) => process.stderr.write(s), tty = !!process.stderr.isTTY): ProgressHooks {
  const line = progressLine((l) => write(l + "\n"), { write, tty });
  const blobs = new Map<string, number>();
  let nCommitted = 0;
  // Seconds since the update began: the daemon makes one hook set for its whole life, so the
  // clock restarts with each update, the first included, rather than counting from the daemon's start.
  let t0 = performance.now();
  let updateId: string | undefined;
  const at = () => `[${((performance.now() - t0) / 1000).toFixed(1)}s]`;
  return {
    endLine: line.clear,
    onStep(name, u) {
      if (u.id !== updateId) {
        t0 = performance.now();
        updateId = u.id;
        blobs.clear(); // a daemon's next update counts its own blobs
        nCommitted = 0;
      }
      if (name === "resume") return;
      line.print(`${at()} ${name} ${u.toTarget} (update ${u.id}, ${u.state})`);
    },
    onInfo: line.print,
    // A bundle of a MiB or more (an app folder that ships files) gets a line of its own; the
    // usual few KiB would only add a line to every update.
    onBundleProgress({ app, done, total }) {
      if (total < BUNDLE_SHOWN_FROM) return;
      if (done >= total) line.print(`${at()} app ${app}: bundle fetched, ${sizeText(total, { exact: true })}`);
      else line.show(`fetching the bundle of app ${app}: ${sizeText(done)} of ${sizeText(total)}`);
    },
    onBlobProgress({ digest, done, total, count, committed, fetchTotal, deltaBytes }) {
      // Several blobs download at once: show the sum over the whole fetch.
      blobs.set(digest, committed ? total : done);
      if (committed) nCommitted++;
      let sum = 0;
      for (const n of blobs.values()) sum += n;
      if (!tty) {
        if (committed) {
          // A layer rebuilt from a delta says so: "fetched 9.2 MiB" would read as the whole layer on the wire.
          const how = deltaBytes === undefined ? "fetched" : "rebuilt";
          const from = deltaBytes === undefined ? "" : ` from a delta of ${sizeText(deltaBytes, { exact: true })}`;
          line.print(`[${nCommitted}/${count}] ${how} ${digest} ${sizeText(total, { exact: true })}${from}`);
        } else line.show(`fetching blobs: ${sizeText(sum)} of ${sizeText(fetchTotal)}, ${nCommitted} of ${count} committed`);
        return;
      }
      const frac = fetchTotal ? Math.min(1, sum / fetchTotal) : 1;
      const width = 30;
      const filled = Math.round(frac * width);
      const bar =
        `[${nCommitted}/${count} blobs] [${"#".repeat(filled)}${" ".repeat(width - filled)}] ${String(Math.floor(frac * 100)).padStart(3)}% ` +
        `${sizeText(sum)} of ${sizeText(fetchTotal)}`;
      // The finished bar stays on the terminal; a bar on its way is redrawn in place.
      if (nCommitted === count) line.print(bar);
      else line.show(bar);
    },
  };
}
