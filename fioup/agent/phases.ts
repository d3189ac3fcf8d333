/**
 * Applying a desired state, as named phases over a persisted {@link Activity}:
 *
 * 1. identify: read the components, diff them against the engine, record the
 *    old containers (ID, running, in-place settings) before anything changes;
 * 2. download: every image the new containers need, into the store and the
 *    engine (nothing else changes, so a failed pull leaves everything running);
 * 3. update: stop and rename the containers being replaced or destroyed,
 *    create the new ones (labelled with the activity), change restart policy
 *    and memory in place;
 * 4. activate: start the new containers and watch them settle (running,
 *    healthy, or exited 0; not crashing or restarting);
 * 5. cleanup: remove the old containers.
 *
 * A failure in update or activate rolls back at once: the new containers go,
 * the old ones get their names back and start again if they ran. Rollback
 * reads only what identify recorded and the activity label, so it is
 * idempotent and also finishes an apply interrupted by a crash
 * (see recover.ts).
 *
 * Phases never publish: they call `onChange` and the agent decides.
 *
 * @module
 */
import { forEachLimit } from "../../lib/oci/image.ts";
import type { ContainerSpec } from "./component-config.ts";
import { createBody, LABELS, updateBody } from "./create-body.ts";
import { oldName, type Activity, type ActivityAction } from "./activity.ts";
import { ApplyFailedError, CONCURRENCY, eachAction, reason, set, setPhase, type ApplyDeps } from "./_phase.ts";
import { waitUntilUp } from "./started.ts";
import { rollback } from "./rollback.ts";
import { faultPoint } from "../fault.ts";

const needsImage = (x: ActivityAction) => x.kind === "create" || x.kind === "recreate";

/** Phase 2: pull and load every image. @throws {ApplyFailedError} (nothing in the engine changed) */
export async function download(d: ApplyDeps, a: Activity): Promise<void> {
  setPhase(d, a, "downloading");
  a.status = "RUNNING";
  await eachAction(d, a, a.actions.filter(needsImage), 3, () => "DOWNLOAD_FAILURE", async (x) => {
    x.status = "DOWNLOADING";
    x.progress = 0;
    d.onChange(a);
    x.image = await d.images.ensure(x.spec!.image, {
      ...(d.signal ? { signal: d.signal } : {}),
      onProgress: (done, total) => {
        x.progress = total ? Math.floor((done / total) * 100) : 0;
        d.onChange(a, true);
      },
    });
    set(d, a, x, "DOWNLOAD_SUCCESS");
  });
  setPhase(d, a, "downloaded");
}

function labelsFor(d: ApplyDeps, a: Activity, spec: ContainerSpec): Record<string, string> {
  return {
    [LABELS.owner]: d.instance,
    [LABELS.version]: spec.version,
    [LABELS.spec]: JSON.stringify(spec),
    [LABELS.activity]: a.activityId,
  };
}

/** Phase 3: stop and set aside the old containers, create the new ones, change settings in place. @throws {ApplyFailedError} */
export async function update(d: ApplyDeps, a: Activity): Promise<void> {
  setPhase(d, a, "updating");
  a.status = "RUNNING";
  const changing = a.actions.filter((x) => x.kind !== "keep");
  await eachAction(d, a, changing, CONCURRENCY, (x) => (x.kind === "destroy" ? "REMOVAL_FAILURE" : "UPDATE_FAILURE"), async (x) => {
    set(d, a, x, x.kind === "destroy" ? "REMOVING" : "UPDATING");
    if (x.kind === "destroy" || x.kind === "recreate") {
      x.stopping = true;
      d.store.save(a);
      await d.engine.stopContainer(x.old!.id);
      // The stop is over: a later rollback must not wait for it again (it would stop the container
      // it has already restored).
      delete x.stopping;
      d.store.save(a);
      faultPoint("agent:stopped", { name: x.name }); // kill-point tests (fioup/fault.ts)
      await d.engine.renameContainer(x.old!.id, oldName(x.name, a.activityId));
      faultPoint("agent:renamed", { name: x.name });
    }
    if (x.kind === "create" || x.kind === "recreate") {
      x.newId = await d.engine.createContainer(x.name, createBody(x.spec!, x.image ?? x.spec!.image, labelsFor(d, a, x.spec!)));
      faultPoint("agent:created", { name: x.name });
    }
    if (x.kind === "update") await d.engine.updateContainer(x.old!.id, updateBody(x.spec!));
    if (x.kind !== "destroy") set(d, a, x, "UPDATE_SUCCESS");
  });
  setPhase(d, a, "updated");
}

/**
 * Phase 4: start the new containers, then watch them for a settle period (started.ts): each must
 * run (healthy, where it has a healthcheck) or have exited 0. @throws {ApplyFailedError}
 */
export async function activate(d: ApplyDeps, a: Activity): Promise<void> {
  setPhase(d, a, "activating");
  const starting = a.actions.filter((x) => x.kind === "create" || x.kind === "recreate" || x.kind === "update");
  await eachAction(d, a, starting, CONCURRENCY, () => "ACTIVATION_FAILURE", async (x) => {
    set(d, a, x, "ACTIVATING");
    if (x.kind !== "update") {
      await d.engine.startContainer(x.newId!);
      faultPoint("agent:started", { name: x.name });
    } else set(d, a, x, "ACTIVATION_SUCCESS");
  });
  const started = starting.filter((x) => x.kind !== "update");
  const failed = await waitUntilUp(d.engine, new Map(started.map((x) => [x.name, x.newId!])), d.signal ? { signal: d.signal } : {});
  for (const x of started) set(d, a, x, failed.has(x.name) ? "ACTIVATION_FAILURE" : "ACTIVATION_SUCCESS", failed.get(x.name));
  if (failed.size) throw new ApplyFailedError([...failed.values()].join("; "));
  setPhase(d, a, "activated");
}

/** Phase 5: remove the old containers; the activity is COMPLETED. A container that will not go is reported, not fatal. */
export async function cleanup(d: ApplyDeps, a: Activity, message?: string): Promise<void> {
  await forEachLimit(a.actions.filter((x) => x.kind === "recreate" || x.kind === "destroy"), CONCURRENCY, async (x) => {
    try {
      await d.engine.removeContainer(x.old!.id);
      faultPoint("agent:removed", { name: x.name });
      if (x.kind === "destroy") set(d, a, x, "REMOVAL_SUCCESS");
    } catch (err) {
      if (x.kind === "destroy") set(d, a, x, "REMOVAL_FAILURE", reason(err));
      else x.message = `old container not removed: ${reason(err)}`;
    }
  });
  a.status = "COMPLETED";
  if (message) a.message = message;
  setPhase(d, a, "done");
}

/** Applies an identified activity in one go: download, update, activate, cleanup; rolls back on failure. */
export async function applyAll(d: ApplyDeps, a: Activity): Promise<void> {
  try {
    await download(d, a);
  } catch (err) {
    a.status = "INCOMPLETE";
    a.message = `${reason(err)}; nothing was changed`;
    setPhase(d, a, "done");
    return;
  }
  try {
    await update(d, a);
    await activate(d, a);
  } catch (err) {
    await rollback(d, a, reason(err));
    return;
  }
  await cleanup(d, a);
}

