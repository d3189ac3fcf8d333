/**
 * The complete step: remove apps the target no longer wants, then prune
 * engine images and store blobs nothing references. The store is shared with the
 * Kanto agent: the prune leaves what a live process's lease holds (lib/device/store.ts).
 *
 * @module
 */
import { currentUpdate } from "./context.ts";
import { DeviceBlobStore } from "../../lib/device/store.ts";
import { planOf } from "./plan.ts";
import { InvalidStateError, reached } from "./states.ts";
import type { Step } from "./step.ts";

export const completeStep: Step = {
  name: "complete",
  async run(ctx) {
    const u = currentUpdate(ctx);
    if (reached(u.state, "completed")) return;
    if (u.state !== "started" && u.state !== "completing") throw new InvalidStateError("complete", u.state);
    ctx.db.setState(u.id, "completing");
    const plan = planOf(u);
    const keep = new Set(plan.apps.map((a) => a.name));
    for (const app of await ctx.runtime.installedApps()) {
      if (!keep.has(app.name)) {
        ctx.hooks.onInfo?.(`Removing ${app.name}`);
        await ctx.runtime.removeApp(app.name);
      }
    }
    await ctx.runtime.pruneImages();
    const pruned = new DeviceBlobStore(ctx.cfg.resetAppsRoot).prune(new Set(plan.blobs.map((b) => b.digest)));
    if (pruned.skipped) ctx.hooks.onInfo?.("Not pruning the blob store: another process is pruning it (the next update prunes)");
    else if (pruned.removed) ctx.hooks.onInfo?.(`Pruned ${pruned.removed} blobs (${pruned.bytes} bytes)`);
    ctx.db.setState(u.id, "completed", { step: "complete" });
  },
};
