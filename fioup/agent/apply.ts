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
 * 4. activate: start the new containers and check they run;
 * 5. cleanup: remove the old containers.
 *
 * A failure in update or activate rolls back at once: the new containers go,
 * the old ones get their names back and start again if they ran. Rollback
 * reads only what identify recorded and the activity label, so it is
 * idempotent and also finishes an apply interrupted by a crash
 * ({@link recoverActivity}).
 *
 * Phases never publish: they call `onChange` and the agent decides.
 *
 * @module
 */
import { forEachLimit } from "../../lib/oci/image.ts";
import { componentSpec, InvalidComponentError, type ContainerSpec } from "./component-config.ts";
import type { ContainerEngine } from "./container-engine.ts";
import { createBody, LABELS, updateBody } from "./create-body.ts";
import { readContainers } from "./current-state.ts";
import { ConflictError, diffContainers } from "./diff.ts";
import type { ImageSource } from "./images.ts";
import { CONTAINERS_DOMAIN, type DesiredStateMessage } from "./messages.ts";
import { oldName, type Activity, type ActivityAction, type ActivityStore, type Phase } from "./activity.ts";

/** The desired state cannot be applied as sent: answered with IDENTIFICATION_FAILED and this message. */
export class IdentificationError extends Error {
  override name = "IdentificationError";
}

/** A phase failed; the activity says which action and why. */
export class ApplyFailedError extends Error {
  override name = "ApplyFailedError";
}

export interface ApplyDeps {
  engine: ContainerEngine;
  images: ImageSource;
  store: ActivityStore;
  instance: string;
  /** Called after every change of a status; `progressOnly` for download progress ticks. */
  onChange(a: Activity, progressOnly?: boolean): void;
  signal?: AbortSignal;
}

/** Containers changed at once (the engine serialises little; compose does the same). */
const CONCURRENCY = 4;

const DOMAIN_KEYS = ["systemContainers", "commandFlow"];

function setPhase(d: ApplyDeps, a: Activity, phase: Phase): void {
  a.phase = phase;
  d.store.save(a);
}

function set(d: ApplyDeps, a: Activity, x: ActivityAction, status: ActivityAction["status"], message?: string): void {
  x.status = status;
  delete x.progress;
  if (message !== undefined) x.message = message;
  d.onChange(a);
}

/**
 * Reads the desired state and plans it against the engine; persists the activity.
 * @throws {IdentificationError} Bad domain config, bad component, duplicate names, a name owned by someone else.
 */
export async function identify(
  d: ApplyDeps,
  msg: DesiredStateMessage,
  defaults: { systemContainers: string[]; commandFlow: boolean },
): Promise<Activity> {
  const domains = msg.payload.domains;
  const di = domains.findIndex((x) => x.id === CONTAINERS_DOMAIN);
  if (di < 0) throw new IdentificationError(`Cannot apply the desired state: it has no "${CONTAINERS_DOMAIN}" domain`);
  const domain = domains[di]!;
  let systemContainers = defaults.systemContainers;
  let commandFlow = defaults.commandFlow;
  (domain.config ?? []).forEach(({ key, value }, i) => {
    const where = `payload.domains[${di}].config[${i}]`;
    if (!DOMAIN_KEYS.includes(key)) throw new IdentificationError(`Cannot apply the desired state: ${where}: unknown key "${key}" (known: ${DOMAIN_KEYS.join(", ")})`);
    if (key === "systemContainers") systemContainers = value.split(",").map((s) => s.trim()).filter(Boolean);
    if (key === "commandFlow") {
      if (value !== "true" && value !== "false") throw new IdentificationError(`Cannot apply the desired state: ${where}: commandFlow must be true or false`);
      commandFlow = value === "true";
    }
  });
  const specs: ContainerSpec[] = [];
  const names = new Set<string>();
  for (const [i, c] of (domain.components ?? []).entries()) {
    const where = `payload.domains[${di}].components[${i}] ("${c.id}")`;
    if (names.has(c.id)) throw new IdentificationError(`Cannot apply the desired state: ${where}: the id appears twice`);
    names.add(c.id);
    try {
      specs.push(componentSpec(c, where));
    } catch (err) {
      if (err instanceof InvalidComponentError) throw new IdentificationError(err.message.replace(/^Cannot use /, "Cannot apply the desired state: "));
      throw err;
    }
  }
  const current = await readContainers(d.engine, d.instance);
  let planned;
  try {
    planned = diffContainers(specs, current, { instance: d.instance, systemContainers });
  } catch (err) {
    if (err instanceof ConflictError) throw new IdentificationError(err.message);
    throw err;
  }
  const a: Activity = {
    activityId: msg.activityId,
    startedAt: new Date().toISOString(),
    commandFlow,
    phase: "identified",
    status: "IDENTIFIED",
    actions: planned.map((p) => ({
      kind: p.kind,
      name: p.name,
      version: p.version,
      ...(p.spec ? { spec: p.spec } : {}),
      ...(p.current ? { old: { id: p.current.id, running: p.current.running, ...(p.current.update ? { update: p.current.update } : {}) } } : {}),
      status: "IDENTIFIED",
    })),
  };
  d.store.save(a);
  return a;
}

const needsImage = (x: ActivityAction) => x.kind === "create" || x.kind === "recreate";
const reason = (err: unknown) => (err as Error)?.message ?? String(err);

/** Phase 2: pull and load every image. @throws {ApplyFailedError} (nothing in the engine changed) */
export async function download(d: ApplyDeps, a: Activity): Promise<void> {
  setPhase(d, a, "downloading");
  a.status = "RUNNING";
  const todo = a.actions.filter(needsImage);
  try {
    await forEachLimit(todo, 3, async (x) => {
      x.status = "DOWNLOADING";
      x.progress = 0;
      d.onChange(a);
      try {
        x.image = await d.images.ensure(x.spec!.image, {
          ...(d.signal ? { signal: d.signal } : {}),
          onProgress: (done, total) => {
            x.progress = total ? Math.floor((done / total) * 100) : 0;
            d.onChange(a, true);
          },
        });
      } catch (err) {
        set(d, a, x, "DOWNLOAD_FAILURE", reason(err));
        throw err;
      }
      set(d, a, x, "DOWNLOAD_SUCCESS");
    });
  } catch (err) {
    throw new ApplyFailedError(reason(err));
  }
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
  try {
    await forEachLimit(a.actions.filter((x) => x.kind !== "keep"), CONCURRENCY, async (x) => {
      set(d, a, x, x.kind === "destroy" ? "REMOVING" : "UPDATING");
      try {
        if (x.kind === "destroy" || x.kind === "recreate") {
          await d.engine.stopContainer(x.old!.id);
          await d.engine.renameContainer(x.old!.id, oldName(x.name, a.activityId));
        }
        if (x.kind === "create" || x.kind === "recreate") {
          x.newId = await d.engine.createContainer(x.name, createBody(x.spec!, x.image ?? x.spec!.image, labelsFor(d, a, x.spec!)));
        }
        if (x.kind === "update") await d.engine.updateContainer(x.old!.id, updateBody(x.spec!));
      } catch (err) {
        set(d, a, x, x.kind === "destroy" ? "REMOVAL_FAILURE" : "UPDATE_FAILURE", reason(err));
        throw err;
      }
      if (x.kind !== "destroy") set(d, a, x, "UPDATE_SUCCESS");
    });
  } catch (err) {
    throw new ApplyFailedError(reason(err));
  }
  setPhase(d, a, "updated");
}

/** Phase 4: start the new containers and check they run. @throws {ApplyFailedError} */
export async function activate(d: ApplyDeps, a: Activity): Promise<void> {
  setPhase(d, a, "activating");
  try {
    await forEachLimit(a.actions.filter((x) => x.kind === "create" || x.kind === "recreate" || x.kind === "update"), CONCURRENCY, async (x) => {
      set(d, a, x, "ACTIVATING");
      if (x.kind !== "update") {
        try {
          await d.engine.startContainer(x.newId!);
          const s = await d.engine.containerDetails(x.newId!);
          if (!s) throw new Error("the container vanished after start");
          if (!s.State.Running && s.State.ExitCode !== 0) throw new Error(`the container exited with code ${s.State.ExitCode}${s.State.Error ? `: ${s.State.Error}` : ""}`);
        } catch (err) {
          set(d, a, x, "ACTIVATION_FAILURE", reason(err));
          throw err;
        }
      }
      set(d, a, x, "ACTIVATION_SUCCESS");
    });
  } catch (err) {
    throw new ApplyFailedError(reason(err));
  }
  setPhase(d, a, "activated");
}

/** Phase 5: remove the old containers; the activity is COMPLETED. A container that will not go is reported, not fatal. */
export async function cleanup(d: ApplyDeps, a: Activity, message?: string): Promise<void> {
  await forEachLimit(a.actions.filter((x) => x.kind === "recreate" || x.kind === "destroy"), CONCURRENCY, async (x) => {
    try {
      await d.engine.removeContainer(x.old!.id);
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

/**
 * Undoes whatever update and activate did: removes the activity's new
 * containers, gives the old ones their names back, starts those that ran,
 * restores in-place settings. The activity ends INCOMPLETE with `why`.
 * Safe to run again after a crash in the middle of it.
 */
export async function rollback(d: ApplyDeps, a: Activity, why: string): Promise<void> {
  setPhase(d, a, "rolling-back");
  const errors: string[] = [];
  const attempt = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch (err) {
      errors.push(`${what}: ${reason(err)}`);
    }
  };
  const created = (await d.engine.listContainers([`${LABELS.activity}=${a.activityId}`])).filter((c) => c.Labels?.[LABELS.owner] === d.instance);
  await forEachLimit(created, CONCURRENCY, (c) => attempt(`remove ${c.Names[0] ?? c.Id}`, () => d.engine.removeContainer(c.Id)));
  await forEachLimit(a.actions.filter((x) => x.old && x.kind !== "keep"), CONCURRENCY, async (x) => {
    const old = x.old!;
    await attempt(`restore ${x.name}`, async () => {
      const s = await d.engine.containerDetails(old.id);
      if (!s) throw new Error("the old container is gone");
      if (s.Name.replace(/^\//, "") !== x.name) await d.engine.renameContainer(old.id, x.name);
      if (x.kind === "update" && old.update) {
        await d.engine.updateContainer(old.id, {
          RestartPolicy: { Name: old.update.policy, MaximumRetryCount: old.update.maxRetries },
          ...(old.update.memory ? { Memory: old.update.memory, MemorySwap: old.update.swap } : {}),
          ...(old.update.reservation ? { MemoryReservation: old.update.reservation } : {}),
        });
      }
      if (old.running && !s.State.Running) await d.engine.startContainer(old.id);
    });
  });
  for (const x of a.actions) {
    if (x.kind === "keep") continue;
    if (x.status.endsWith("_FAILURE")) continue;
    if (x.status !== "IDENTIFIED" && x.status !== "DOWNLOAD_SUCCESS") x.message = x.message ?? "rolled back";
  }
  a.status = "INCOMPLETE";
  a.message = errors.length ? `${why}; rollback incomplete: ${errors.join("; ")}` : `${why}; the previous containers were restored`;
  setPhase(d, a, "done");
  d.onChange(a);
}

/** Applies an identified activity in one go: download, update, activate, cleanup; rolls back on failure. */
export async function applyAll(d: ApplyDeps, a: Activity): Promise<void> {
  try {
    await download(d, a);
  } catch (err) {
    a.status = "INCOMPLETE";
    a.message = `${reason(err)}; nothing was changed`;
    setPhase(d, a, "done");
    d.onChange(a);
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
  d.onChange(a);
}

/**
 * Finishes an activity found persisted at start (the agent was killed): an
 * apply that had started all its new containers is completed; one that had
 * begun changing containers is rolled back; one that had changed nothing is
 * closed INCOMPLETE. The activity's message tells the back end which.
 */
export async function recoverActivity(d: ApplyDeps, a: Activity): Promise<void> {
  switch (a.phase) {
    case "done":
      return;
    case "identified":
    case "downloading":
    case "downloaded":
      a.status = "INCOMPLETE";
      a.message = "the agent restarted before changing any container; the previous containers are unchanged";
      setPhase(d, a, "done");
      d.onChange(a);
      return;
    case "activated":
      await cleanup(d, a, "the agent restarted after starting the new containers; the desired state is applied");
      d.onChange(a);
      return;
    default:
      await rollback(d, a, "the agent restarted in the middle of the apply");
  }
}
