/**
 * The install step, done so the running apps are down as briefly as possible:
 * first, while the old apps keep running, load the changed apps' images into
 * the engine and extract their bundles into staging dirs (the runtime checks
 * both); then stop only the apps that change or go away, swap the staged dirs
 * into place, and stop there (the start step starts them). Unchanged apps are
 * never stopped and their directories never touched. A failure while staging
 * leaves everything running as it was; a failure after the stop rolls back.
 *
 * @module
 */
import { currentUpdate } from "./context.ts";
import { eventFor } from "./_events.ts";
import { planOf } from "./plan.ts";
import { rollback } from "./rollback.ts";
import { InvalidStateError, reached } from "./states.ts";
import type { Step } from "./step.ts";
import { touchedApps } from "./touched.ts";
import type { StopResult } from "../runtime/index.ts";

export class InstallFailedError extends Error {
  override name = "InstallFailedError";
  constructor(target: string, cause: unknown) {
    super(`Cannot install ${target}; rolled back to the previous target`, { cause });
  }
}

/** One line per stopped app for humans and the event: how long, and who held it up. */
export function describeStop(r: StopResult): string {
  const s = r.slowest;
  if (!s) return `${r.name}: nothing was running`;
  const why = s.killed ? `, killed after its ${s.graceSeconds ?? 10} s grace period: it ignored its stop signal` : "";
  return `${r.name}: stopped in ${r.ms} ms, held up by service "${s.service}" (${s.ms} ms${why})`;
}

export const installStep: Step = {
  name: "install",
  async run(ctx) {
    let u = currentUpdate(ctx);
    if (reached(u.state, "installed")) return;
    if (u.state !== "fetched" && u.state !== "installing") throw new InvalidStateError("install", u.state);
    if (u.state === "fetched") ctx.db.setState(u.id, "installing", { events: [eventFor(u, "EcuInstallationStarted")] });
    u = currentUpdate(ctx);
    const plan = planOf(u);
    const touched = await touchedApps(ctx, u);
    const changed = plan.apps.filter((a) => touched.changed.includes(a.name));

    // While the old apps run: images into the engine, bundles into staging dirs.
    try {
      for (const app of changed) {
        if (await ctx.runtime.isInstalled(app)) continue; // swapped by a run that was killed after it
        ctx.hooks.onInfo?.(`Installing ${app.name}`);
        await ctx.runtime.stageApp({ name: app.name, uri: app.uri }, { signal: ctx.signal, onProgress: ctx.hooks.onInfo });
      }
    } catch (cause) {
      if (ctx.signal?.aborted) throw cause;
      // Nothing was stopped yet (unless a killed run got that far): the old apps run on untouched.
      await rollback(ctx, currentUpdate(ctx), "install", (cause as Error).message, { appsTouched: ctx.db.stepDone(u.id, "stop") });
      throw new InstallFailedError(u.toTarget, cause);
    }

    // Now the short part: stop what changes or goes away, swap the new dirs in.
    let stopped: StopResult[] = [];
    try {
      const stop = [...touched.changed, ...touched.removed];
      ctx.db.setState(u.id, "installing", { step: "stop" }); // from here a failure must restore the old apps
      if (stop.length) {
        // Every one is stopped (a killed run may have left a new app's containers), but only
        // those installed before are told: a first install has nothing to stop.
        const before = new Set((await ctx.runtime.installedApps()).map((a) => a.name));
        const told = stop.filter((n) => before.has(n));
        if (told.length) ctx.hooks.onInfo?.(`Stopping ${told.join(", ")}`);
        stopped = await ctx.runtime.stopApps(stop);
        for (const r of stopped) if (before.has(r.name) || r.slowest) ctx.hooks.onInfo?.(`Stopped ${describeStop(r)}`);
      }
      for (const app of changed) await ctx.runtime.swapApp(app.name);
    } catch (cause) {
      if (ctx.signal?.aborted) throw cause;
      await rollback(ctx, currentUpdate(ctx), "install", (cause as Error).message);
      throw new InstallFailedError(u.toTarget, cause);
    }
    u = currentUpdate(ctx);
    try {
      ctx.db.setState(u.id, "installed", {
        step: "install",
        events: [eventFor(u, "EcuInstallationApplied", { details: { changed: touched.changed, removed: touched.removed, stopped: stopped.map(describeStop) } })],
      });
    } catch (err) {
      // A full disk can refuse this write after the old apps stopped: put them back before
      // anything else, so a failed update never leaves the running target down.
      await rollback(ctx, u, "install", (err as Error).message).catch(() => {});
      throw err;
    }
  },
};
