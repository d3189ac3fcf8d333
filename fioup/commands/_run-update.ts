/**
 * Runs a list of update steps the way every update command does: registered
 * device, the update lock, progress on stderr, events and app states sent
 * afterwards (best effort), the update summarized on stdout.
 *
 * @module
 */
import type { Output } from "../../lib/cli/command.ts";
import { acquireLock } from "../../lib/fs/pid-lock.ts";
import { progressHooks } from "../progress.ts";
import { reportAll } from "../report.ts";
import { openSession } from "../session.ts";
import { runSteps, type Step } from "../update/step.ts";
import { renderSummary, summarize } from "./_summary.ts";

export async function runUpdateCommand(flags: { "sota-dir"?: string }, steps: Step[], out: Output): Promise<void> {
  const s = openSession({ ...flags, requireRegistration: true, choosesTargets: true });
  const lock = acquireLock(s.lockPath);
  const ac = new AbortController();
  const onSignal = () => ac.abort(new Error("interrupted"));
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);
  try {
    const ctx = s.ctx(progressHooks(), ac.signal);
    try {
      await runSteps(steps, ctx);
    } finally {
      for (const e of await reportAll(s)) out.info(`warning: cannot report to the gateway: ${e.message}`);
    }
    const u = ctx.updateId ? s.db.getUpdate(ctx.updateId) : undefined;
    if (u) out.result(summarize(u), renderSummary);
  } finally {
    process.off("SIGTERM", onSignal);
    process.off("SIGINT", onSignal);
    lock.release();
    s.close();
  }
}
