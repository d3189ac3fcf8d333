/**
 * The init step: resolve the target's apps to the list of blobs and bytes the
 * device lacks, and save that plan with the update. It is the first step after the
 * update is chosen (`fioup update`, `fioup fetch`, the daemon's resume), so it is also where a
 * cancel cut short (the update left `cancelling`) is finished first: that ends the update, and
 * the steps after it have nothing to do (./step.ts).
 *
 * @module
 */
import { currentUpdate, wantedApps } from "./context.ts";
import { eventFor } from "./_events.ts";
import { finishCancel } from "./cancel.ts";
import { DeviceBlobStore } from "../../lib/device/store.ts";
import { resolveApps, type ResolvedApps } from "../../lib/device/resolve.ts";
import { newPlan } from "./plan.ts";
import { InvalidStateError, reached } from "./states.ts";
import type { Step } from "./step.ts";

export class InitFailedError extends Error {
  override name = "InitFailedError";
  constructor(cause: unknown) {
    super("Cannot prepare the update", { cause });
  }
}

export const initStep: Step = {
  name: "init",
  async run(ctx) {
    let u = currentUpdate(ctx);
    if (reached(u.state, "initialized")) return;
    if (u.state === "cancelling") {
      await finishCancel(ctx, u);
      return;
    }
    if (u.state !== "created" && u.state !== "initializing") throw new InvalidStateError("initialize", u.state);
    if (u.state === "created") ctx.db.setState(u.id, "initializing", { events: [eventFor(u, "UpdateInitStarted")] });
    const store = new DeviceBlobStore(ctx.cfg.resetAppsRoot);
    let plan: ResolvedApps;
    try {
      const onBundleProgress = ctx.hooks.onBundleProgress;
      plan = await resolveApps(wantedApps(ctx.cfg, u.target), {
        registry: ctx.registry,
        store,
        signal: ctx.signal,
        ...(onBundleProgress ? { onBundleProgress: (p: { app: string; done: number; total: number }) => onBundleProgress(p) } : {}),
      });
    } catch (cause) {
      if (ctx.signal?.aborted) throw cause;
      u = currentUpdate(ctx);
      ctx.db.setState(u.id, "failed", {
        error: (cause as Error).message,
        events: [eventFor(u, "UpdateInitCompleted", { success: false, details: (cause as Error).message })],
      });
      throw new InitFailedError(cause);
    }
    const missing = plan.blobs.filter((b) => !store.has(b.digest));
    const missingBytes = missing.reduce((s, b) => s + b.size, 0);
    ctx.db.setPlan(u.id, newPlan(plan), missingBytes + plan.resolveBytes);
    if (plan.resolveBytes) ctx.db.addBytesFetched(u.id, plan.resolveBytes);
    ctx.db.setState(u.id, "initialized", {
      step: "init",
      events: [eventFor(u, "UpdateInitCompleted", { success: true, details: { blobs: missing.length, bytes: missingBytes } })],
    });
  },
};
