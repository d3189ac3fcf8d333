/**
 * The complete step: remove apps the target no longer wants, then prune
 * engine images and store blobs nothing references. The store is shared with the
 * Kanto agent: the prune leaves what a live process's lease holds (lib/device/store.ts).
 *
 * The new target already runs (the start step made it current): this is clean-up, done best
 * effort. A removal or prune that fails (`compose down` refused because a kept app still uses the
 * removed app's network, the engine busy) is said as a warning and the update completes anyway:
 * thrown, it left the update `completing` for ever, every run failing the same way, and with it
 * `fioup update` refused (an update is pending) and `fioup cancel` too (its apps have started).
 * What is left is taken by the next update's complete step (an app no target wants is removed
 * then, the images and blobs pruned).
 *
 * @module
 */
import { currentUpdate, type UpdateContext } from "./context.ts";
import { DeviceBlobStore } from "../../lib/device/store.ts";
import { planOf } from "./plan.ts";
import { InvalidStateError, reached } from "./states.ts";
import type { Step } from "./step.ts";

/** Runs one piece of the clean-up; its failure is a warning (a stop signal still stops the step). */
async function bestEffort(ctx: UpdateContext, what: string, fn: () => unknown): Promise<void> {
  try {
    await fn();
  } catch (e) {
    if (ctx.signal?.aborted) throw e;
    ctx.hooks.onInfo?.(`warning: cannot ${what}: ${(e as Error).message}; the update completes anyway, and the next update tries again`);
  }
}

export const completeStep: Step = {
  name: "complete",
  async run(ctx) {
    const u = currentUpdate(ctx);
    if (reached(u.state, "completed")) return;
    if (u.state !== "started" && u.state !== "completing") throw new InvalidStateError("complete", u.state);
    ctx.db.setState(u.id, "completing");
    const plan = planOf(u);
    const keep = new Set(plan.apps.map((a) => a.name));
    await bestEffort(ctx, "list the installed apps", async () => {
      for (const app of await ctx.runtime.installedApps()) {
        if (keep.has(app.name)) continue;
        ctx.hooks.onInfo?.(`Removing ${app.name}`);
        await bestEffort(ctx, `remove ${app.name}`, () => ctx.runtime.removeApp(app.name));
      }
    });
    await bestEffort(ctx, "prune unused images", () => ctx.runtime.pruneImages());
    await bestEffort(ctx, "prune the blob store", () => {
      const pruned = new DeviceBlobStore(ctx.cfg.resetAppsRoot).prune(new Set(plan.blobs.map((b) => b.digest)));
      if (pruned.skipped) ctx.hooks.onInfo?.("Not pruning the blob store: another process is pruning it (the next update prunes)");
      else if (pruned.removed) ctx.hooks.onInfo?.(`Pruned ${pruned.removed} blobs (${pruned.bytes} bytes)`);
    });
    ctx.db.setState(u.id, "completed", { step: "complete" });
  },
};
