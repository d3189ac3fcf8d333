/**
 * Undoing an apply, from what identify recorded and the activity label only,
 * so it is idempotent: run again after a crash in the middle of it, it ends
 * the same.
 *
 * @module
 */
import { forEachLimit } from "../../lib/oci/image.ts";
import { LABELS } from "./create-body.ts";
import type { Activity } from "./activity.ts";
import { CONCURRENCY, reason, setPhase, type ApplyDeps } from "./_phase.ts";
import { faultPoint } from "../fault.ts";
import { EngineError } from "./container-engine.ts";

/**
 * Undoes whatever update and activate did: removes the activity's new
 * containers, gives the old ones their names back, starts those that ran
 * (after any stop a killed agent left under way in the engine has ended),
 * restores in-place settings. The activity ends INCOMPLETE with `why`, and
 * each action it undid UPDATE_FAILURE (REMOVAL_FAILURE for a destroy), "rolled back".
 * Safe to run again after a crash in the middle of it.
 * @throws {EngineError} The engine cannot be reached (the activity stays `rolling-back`, to be run again).
 */
export async function rollback(d: ApplyDeps, a: Activity, why: string): Promise<void> {
  setPhase(d, a, "rolling-back");
  const errors: string[] = [];
  /** The engine stopped answering (no HTTP status): the rollback is not over, but to be tried again. */
  let gone: EngineError | undefined;
  const attempt = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch (err) {
      if (err instanceof EngineError && err.status === undefined) gone ??= err;
      else errors.push(`${what}: ${reason(err)}`);
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
      let running = s.State.Running;
      if (old.running && running && x.stopping) {
        // The stop a killed agent asked for may still be under way in the engine: it would end the
        // container after we leave it running. Stopping it too returns once that stop is over.
        await d.engine.stopContainer(old.id);
        running = false;
        d.log?.(`rollback ${x.name}: waited for the stop it had been asked for`);
      }
      if (x.stopping) {
        // Any stop asked for is over now (waited for above, or the container was found stopped).
        // Cleared before the start: a rollback run again after a kill that lands once the container
        // is restored must not stop it once more.
        delete x.stopping;
        d.store.save(a);
      }
      if (old.running && !running) await d.engine.startContainer(old.id);
      faultPoint("agent:restored", { name: x.name }); // kill-point tests (fioup/fault.ts)
    });
  });
  // Thrown once every step was tried (none left running to race the retry): the activity stays
  // `rolling-back`, and the agent retries it with backoff (agent.ts) instead of ending it
  // "rollback incomplete" for good over an engine that was restarting.
  if (gone) throw gone;
  for (const x of a.actions) {
    // An action that failed keeps its own reason; one the apply had not reached changed nothing.
    if (x.kind === "keep" || x.status.endsWith("_FAILURE") || x.status === "IDENTIFIED" || x.status === "DOWNLOAD_SUCCESS") continue;
    // The rest (in progress, or done and now undone) did not take effect: the back end reads the
    // final feedback as the end state, so none may stay in progress or say it succeeded.
    x.status = x.status === "DOWNLOADING" ? "DOWNLOAD_FAILURE" : x.kind === "destroy" ? "REMOVAL_FAILURE" : "UPDATE_FAILURE";
    delete x.progress;
    x.message = "rolled back";
  }
  a.status = "INCOMPLETE";
  a.message = errors.length ? `${why}; rollback incomplete: ${errors.join("; ")}` : `${why}; the previous containers were restored`;
  setPhase(d, a, "done");
}

