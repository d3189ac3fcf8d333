/**
 * The stop step: stop the running apps that the new target changes or drops
 * (unchanged apps keep running). Marks the start of installation.
 *
 * @module
 */
import { currentUpdate } from "./context.ts";
import { eventFor } from "./_events.ts";
import { planOf } from "./plan.ts";
import { InvalidStateError, reached } from "./states.ts";
import type { Step } from "./step.ts";

export const stopStep: Step = {
  name: "stop",
  async run(ctx) {
    const u = currentUpdate(ctx);
    if (reached(u.state, "installed") || ctx.db.stepDone(u.id, "stop")) return;
    if (!reached(u.state, "fetched")) throw new InvalidStateError("install", u.state);
    if (u.state === "fetched") ctx.db.setState(u.id, "installing", { events: [eventFor(u, "EcuInstallationStarted")] });
    const plan = planOf(u);
    const next = new Map(plan.apps.map((a) => [a.name, a.uri]));
    const installed = await ctx.runtime.installedApps();
    const stop = installed.filter((a) => next.get(a.name) !== a.uri).map((a) => a.name);
    if (stop.length) {
      ctx.hooks.onInfo?.(`Stopping ${stop.join(", ")}`);
      await ctx.runtime.stopApps(stop);
    }
    try {
      ctx.db.setState(u.id, "installing", { step: "stop" });
    } catch (err) {
      // A full disk can refuse this write after the old apps stopped: put them back before
      // anything else, so a failed update never leaves the running target down.
      if (stop.length) await ctx.runtime.startApps(stop).catch(() => {});
      throw err;
    }
  },
};
