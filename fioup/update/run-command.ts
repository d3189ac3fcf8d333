/**
 * Runs a list of update steps the way every update command does: registered
 * device, the update lock, progress on stderr, events and app states sent
 * afterwards (best effort; the events also as the download begins, report.ts
 * reportingHooks), the update summarized on stdout. Ctrl-C or SIGTERM stops it at the next safe
 * point, said as where the update stands and what resumes it; the same signal again ends the process.
 * `fioup update|fetch|install|start` and `fioup update --offline DIR` run their steps through it.
 *
 * @module
 */
import type { Output } from "../../lib/cli/command.ts";
import { abortOnStopSignals } from "../../lib/cli/interrupt.ts";
import { renderSummary, summarize } from "./summary.ts";
import { progressHooks } from "../progress.ts";
import { reportAll, reportingHooks } from "../report.ts";
import { openSession, type Session } from "../session.ts";
import { InterruptedError, interruptedMessage, reached } from "./states.ts";
import { savedTouched } from "./touched.ts";
import { appStatuses } from "../converge.ts";
import type { UpdateRow } from "../db.ts";
import type { UpdateContext } from "./context.ts";
import { runSteps, type Step } from "./step.ts";
import { takeUpdateLock } from "./update-lock.ts";

/**
 * The apps an interrupted update stopped that do not run now: those it touches (touched.ts) that
 * the current target runs and that are down. Only between the install's stop and the start step
 * (which starts them again); none when the engine cannot say.
 */
async function leftStopped(s: Session, ctx: UpdateContext, u: UpdateRow): Promise<string[]> {
  const touched = savedTouched(ctx, u);
  if (!touched || reached(u.state, "starting") || !reached(u.state, "installing")) return [];
  const names = new Set([...touched.changed, ...touched.removed]);
  try {
    return (await appStatuses(s)).filter((a) => a.status === "stopped" && names.has(a.name)).map((a) => a.name);
  } catch {
    return [];
  }
}

/** `action` names the command in a refusal ("Cannot install: ..."). */
export async function runUpdateCommand(flags: { "sota-dir"?: string }, steps: Step[], out: Output, action = "update"): Promise<void> {
  const s = openSession({ ...flags, requireRegistration: true, choosesTargets: true });
  const lock = takeUpdateLock(s.lockPath, action);
  const stop = abortOnStopSignals("interrupted", "ends");
  try {
    const hooks = progressHooks();
    const ctx = s.ctx(reportingHooks(s, hooks), stop.signal);
    try {
      await runSteps(steps, ctx).catch(async (e) => {
        hooks.endLine();
        const u = stop.signal.aborted && ctx.updateId ? s.db.getUpdate(ctx.updateId) : undefined;
        if (!u) throw e;
        throw new InterruptedError(interruptedMessage(u, action, await leftStopped(s, ctx, u)));
      });
    } finally {
      // Reporting comes after the update, and its own failure (a full disk refusing to record what
      // was sent) must not hide the update's: said as a warning, the update's error stands.
      const problems = await reportAll(s).catch((e: unknown) => [e as Error]);
      for (const e of problems) out.info(`warning: cannot report to the gateway: ${e.message}`);
    }
    const u = ctx.updateId ? s.db.getUpdate(ctx.updateId) : undefined;
    if (u) out.result(summarize(u), renderSummary);
  } finally {
    stop.release();
    lock.release();
    s.close();
  }
}
