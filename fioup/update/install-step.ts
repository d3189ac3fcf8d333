/**
 * The install step, done so the running apps are down as briefly as possible:
 * first, while the old apps keep running, load the changed apps' images into
 * the engine and extract their bundles into staging dirs (the runtime checks
 * both); then stop only the apps that change or go away, swap the staged dirs
 * into place, and stop there (the start step starts them). Unchanged apps are
 * never stopped and their directories never touched. A failure while staging
 * leaves everything running as it was; a failure after the stop rolls back.
 * Before the engine loads an app's images, Docker's data root is checked for room as the
 * fetch checks it (space.ts): the blobs may have been in the store before the fetch, which then
 * checked nothing. Refused, the update fails with the fetch's NoSpaceError (exit 41), nothing
 * stopped and nothing marked bad (unless it can never fit), and the next poll refuses it again
 * before loading anything, until there is room.
 *
 * @module
 */
import { faultPoint } from "../fault.ts";
import type { UpdateRow } from "../db.ts";
import type { AppBlob } from "../../lib/device/resolve.ts";
import { currentUpdate, type UpdateContext } from "./context.ts";
import { eventFor } from "./_events.ts";
import { notePermanentFailure, recordUnlessDiskFull } from "./fetch-step.ts";
import { checkSpace, dockerRootNeed, NoSpaceError } from "./space.ts";
import { planOf } from "./plan.ts";
import { finishInterruptedRollback, rollback, rollbackOutcome } from "./rollback.ts";
import type { RestoreResult } from "./restore.ts";
import { InvalidStateError, reached } from "./states.ts";
import type { Step } from "./step.ts";
import { touchedApps } from "./touched.ts";
import type { StopResult } from "../runtime/index.ts";
import type { LayerLoad } from "../runtime/images.ts";

export class InstallFailedError extends Error {
  override name = "InstallFailedError";
  constructor(target: string, cause: unknown, restore?: RestoreResult) {
    super(`Cannot install ${target}; ${rollbackOutcome(restore)}`, { cause });
  }
}

/** One line per stopped app for humans and the event: how long, and who held it up. */
export function describeStop(r: StopResult): string {
  const s = r.slowest;
  if (!s) return `${r.name}: nothing was running`;
  const why = s.killed ? `, killed after its ${s.graceSeconds ?? 10} s grace period: it ignored its stop signal` : "";
  return `${r.name}: stopped in ${r.ms} ms, held up by service "${s.service}" (${s.ms} ms${why})`;
}

/**
 * Checks Docker's data root has room for `layers` (what the engine will load for an app), as
 * the fetch checks it before its first byte.
 * @throws {NoSpaceError}
 */
async function checkDockerRoot(ctx: UpdateContext, u: UpdateRow, layers: LayerLoad[]): Promise<void> {
  const blobs = new Map(planOf(u).blobs.map((b) => [b.digest, b]));
  const asBlob = ({ layer }: LayerLoad): AppBlob => blobs.get(layer.digest) ?? { ...layer, kind: "layer", registry: "", repo: "" };
  const dataRoot = await ctx.runtime.dataRoot();
  const need = await dockerRootNeed(ctx, u, dataRoot, layers.map(asBlob), layers.filter((l) => l.unpack).map(asBlob));
  await checkSpace([need], ctx.cfg.storageWatermark);
}

/**
 * Fails the update for want of room, as the fetch does (a target that can never fit is marked
 * bad the second time): nothing was stopped, so the running apps run on untouched, and the
 * next poll refuses it again before loading anything, until there is room.
 */
async function refuse(ctx: UpdateContext, u: UpdateRow, err: NoSpaceError): Promise<void> {
  await ctx.runtime.discardStaged(planOf(u).apps.map((a) => a.name)).catch(() => {});
  // A disk with no byte left refuses the record: the update stays installing, the refusal is said.
  recordUnlessDiskFull(() =>
    ctx.db.transaction(() => {
      notePermanentFailure(ctx, u, err);
      ctx.db.setState(u.id, "failed", {
        error: `install failed: ${err.message}`,
        events: [eventFor(u, "EcuInstallationCompleted", { success: false, details: { phase: "install", error: err.message } })],
      });
    }),
  );
}

export const installStep: Step = {
  name: "install",
  async run(ctx) {
    let u = currentUpdate(ctx);
    if (reached(u.state, "installed")) return;
    if (u.state !== "fetched" && u.state !== "installing") throw new InvalidStateError("install", u.state);
    const interrupted = await finishInterruptedRollback(ctx, u);
    if (interrupted) throw new InstallFailedError(u.toTarget, new Error(interrupted.error), interrupted.restore);
    if (u.state === "fetched") ctx.db.setState(u.id, "installing", { events: [eventFor(u, "EcuInstallationStarted")] });
    u = currentUpdate(ctx);
    const plan = planOf(u);
    const touched = await touchedApps(ctx, u);
    const changed = plan.apps.filter((a) => touched.changed.includes(a.name));

    // While the old apps run: images into the engine, bundles into staging dirs. Before the
    // engine loads an app's images, its data root must have room for them (a run killed after
    // the stop staged everything already: it only swaps).
    const beforeLoad = ctx.db.stepDone(u.id, "stop") ? undefined : (layers: LayerLoad[]) => checkDockerRoot(ctx, u, layers);
    try {
      for (const app of changed) {
        if (await ctx.runtime.isInstalled(app)) continue; // swapped by a run that was killed after it
        ctx.hooks.onInfo?.(`Installing ${app.name}`);
        await ctx.runtime.stageApp({ name: app.name, uri: app.uri }, { signal: ctx.signal, onProgress: ctx.hooks.onInfo, ...(beforeLoad ? { beforeLoad } : {}) });
      }
    } catch (cause) {
      if (ctx.signal?.aborted) throw cause;
      // Thrown from inside the bundle's extraction, which may wrap it.
      const noSpace = [cause, (cause as Error)?.cause].find((e) => e instanceof NoSpaceError);
      if (noSpace) {
        await refuse(ctx, currentUpdate(ctx), noSpace);
        throw noSpace;
      }
      // Nothing was stopped yet (unless a killed run got that far): the old apps run on untouched.
      const restore = await rollback(ctx, currentUpdate(ctx), "install", (cause as Error).message, { appsTouched: ctx.db.stepDone(u.id, "stop") });
      throw new InstallFailedError(u.toTarget, cause, restore);
    }

    faultPoint("staged");
    // The point of no return: a stop signal (Ctrl-C, systemctl stop) that came while the apps were
    // staged ends the run here, the old apps still running and the update saved at installing.
    // Its handler runs on the event loop, so one turn first: a signal already delivered is seen.
    await new Promise((r) => setImmediate(r));
    ctx.signal?.throwIfAborted();

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
      const restore = await rollback(ctx, currentUpdate(ctx), "install", (cause as Error).message);
      throw new InstallFailedError(u.toTarget, cause, restore);
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
