/**
 * What the phases of an apply share: their dependencies, the failure they
 * throw, and the two writes every phase makes (its phase, persisted before it
 * changes the engine; an action's status, reported through onChange).
 *
 * @module
 */
import { forEachLimit } from "../../lib/oci/image.ts";
import type { Activity, ActivityAction, ActivityStore, Phase } from "./activity.ts";
import type { ContainerEngine } from "./container-engine.ts";
import type { ImageSource } from "./images.ts";
import { faultPoint } from "../fault.ts";

/** A phase failed; the activity says which action and why. */
export class ApplyFailedError extends Error {
  override name = "ApplyFailedError";
}

export interface ApplyDeps {
  engine: ContainerEngine;
  images: ImageSource;
  store: ActivityStore;
  instance: string;
  /**
   * Called after every change of an action's status; `progressOnly` for
   * download progress ticks. Not for the activity's end (phase "done"): the
   * caller reports that once, when the apply returns.
   */
  onChange(a: Activity, progressOnly?: boolean): void;
  /** A line for the operator's log (what a recovery or rollback did to each container). */
  log?(line: string): void;
  signal?: AbortSignal;
}

/** Containers changed at once (the engine serialises little; compose does the same). */
export const CONCURRENCY = 4;

export function setPhase(d: ApplyDeps, a: Activity, phase: Phase): void {
  a.phase = phase;
  d.store.save(a);
  faultPoint(`agent:${phase}`); // kill-point tests: FIOUP_FAULT=agent:<phase> (fioup/fault.ts)
}

export function set(d: ApplyDeps, a: Activity, x: ActivityAction, status: ActivityAction["status"], message?: string): void {
  x.status = status;
  delete x.progress;
  if (message !== undefined) x.message = message;
  d.onChange(a);
}

export const reason = (err: unknown) => (err as Error)?.message ?? String(err);

/**
 * Runs `step` over `actions`, a few at once. A failing step marks its action
 * `failure(x)` with the reason and fails the phase once the steps in flight end.
 * @throws {ApplyFailedError}
 */
export async function eachAction(
  d: ApplyDeps,
  a: Activity,
  actions: ActivityAction[],
  limit: number,
  failure: (x: ActivityAction) => ActivityAction["status"],
  step: (x: ActivityAction) => Promise<void>,
): Promise<void> {
  try {
    await forEachLimit(actions, limit, async (x) => {
      try {
        await step(x);
      } catch (err) {
        set(d, a, x, failure(x), reason(err));
        throw err;
      }
    });
  } catch (err) {
    throw new ApplyFailedError(reason(err));
  }
}
