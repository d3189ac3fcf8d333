/**
 * The start step: `compose up` every app the update changed (in parallel where
 * they do not depend on each other) and wait until they run. Success makes
 * the new target current; failure rolls back at once.
 *
 * @module
 */
import { currentUpdate } from "./context.ts";
import { eventFor } from "./_events.ts";
import { planOf } from "./plan.ts";
import { finishInterruptedRollback, rollback, rollbackOutcome } from "./rollback.ts";
import type { RestoreResult } from "./restore.ts";
import { InvalidStateError, reached } from "./states.ts";
import { savedTouched } from "./touched.ts";
import type { Step } from "./step.ts";

export class StartFailedError extends Error {
  override name = "StartFailedError";
  constructor(target: string, why: string, restore?: RestoreResult) {
    super(`Cannot start ${target}: ${why}; ${rollbackOutcome(restore)}`);
  }
}

/**
 * `p`, or its rejection with the signal's reason as soon as `signal` aborts. The runtime's wait
 * takes no signal: it polls on to its own end in the background, which the exiting command cuts.
 */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** How long each app may take to come up. */
export const START_TIMEOUT_MS = 120_000;

export const startStep: Step = {
  name: "start",
  async run(ctx) {
    let u = currentUpdate(ctx);
    if (reached(u.state, "started")) return;
    if (u.state !== "installed" && u.state !== "starting") throw new InvalidStateError("start", u.state);
    const interrupted = await finishInterruptedRollback(ctx, u);
    if (interrupted) throw new StartFailedError(u.toTarget, interrupted.error, interrupted.restore);
    if (u.state === "installed") ctx.db.setState(u.id, "starting");
    const plan = planOf(u);
    const names = plan.apps.map((a) => a.name);
    // Only the apps this update changed: the others never stopped.
    const start = savedTouched(ctx, u)?.changed ?? names;
    let why: string | undefined;
    let appFailed = false;
    try {
      // Start exactly what the target pins: a power cut can undo the swap of an app's dir (the
      // old version is back) or lose its loaded images. Such an app is installed again from the
      // store first, so the device never records the new target while running the old one.
      for (const app of plan.apps.filter((a) => start.includes(a.name))) {
        if (!(await ctx.runtime.isInstalled(app))) await ctx.runtime.installApp(app, { signal: ctx.signal });
      }
      // The wait can take up to the timeout: said before it, not only after, so a terminal is not silent meanwhile.
      if (start.length) {
        ctx.hooks.onInfo?.(`Starting ${start.join(", ")}: waiting until ${start.length > 1 ? "each runs" : "it runs"} (healthy, where there is a healthcheck; at most ${START_TIMEOUT_MS / 1000} s)`);
      }
      // Ctrl-C or SIGTERM ends the wait at once (not when the apps turn healthy, up to the timeout,
      // as long as systemd waits for the daemon to stop): the update stays `starting`, and the next
      // run starts the same apps again and waits anew.
      const results = start.length ? await untilAborted(ctx.runtime.startApps(start, { timeoutMs: START_TIMEOUT_MS }), ctx.signal) : [];
      const bad = results.filter((r) => !r.ok);
      if (bad.length) why = bad.map((r) => `${r.name}: ${r.error ?? "not running"}`).join("; ");
      appFailed = bad.some((r) => r.appFailed);
    } catch (e) {
      if (ctx.signal?.aborted) throw e;
      why = (e as Error).message;
    }
    if (why !== undefined) {
      const restore = await rollback(ctx, currentUpdate(ctx), "start", why, { appFailed });
      throw new StartFailedError(u.toTarget, why, restore);
    }
    u = currentUpdate(ctx);
    // One commit: the device never runs the new target without recording it, nor the reverse.
    ctx.db.transaction(() => {
      ctx.db.setCurrentTarget(u.target);
      ctx.db.setState(u.id, "started", { step: "start", events: [eventFor(u, "EcuInstallationCompleted", { success: true })] });
    });
  },
};
