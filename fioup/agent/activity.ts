/**
 * The activity in progress, persisted like any fioup update: written
 * atomically before each change to the engine, so an agent killed mid-apply
 * (power cut, SIGKILL) finds on its next start what it was doing, which old
 * containers it had stopped or renamed and which new ones it had created,
 * and can finish or undo it. Removed once the broker acknowledged the final
 * feedback; a record left `done` has its end published again (agent.ts).
 *
 * Beside it, the activities that finished (their ids, the latest desired
 * state's timestamp): a desired state the broker keeps (retained) comes again
 * at every connect, and must not be applied again, nor an older one over a newer.
 * And the desired states refused for good (their content is at fault), known by
 * the digest of the message's bytes, which a retained copy repeats exactly: it is
 * not refused again at each connect, while a corrected message, even under the
 * same activityId, is a new one.
 *
 * A file without `version` 2 comes from an agent that put refused activities'
 * ids among the ended ones, so its ids may be either: they are kept apart
 * (`legacyIds`) and stand only for messages no newer than the newest state
 * applied (a replay of an applied one is never newer; a corrected one,
 * republished later, is), so an upgrade does not ignore a correction.
 *
 * @module
 */
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomicSync } from "../../lib/fs/atomic-write.ts";
import type { ContainerSpec } from "./component-config.ts";
import type { ActionKind, CurrentContainer } from "./diff.ts";
import { componentId, type ActionStatus, type ActivityStatus, type Feedback } from "./feedback.ts";

/**
 * Where an apply is: each phase is written before its first change to the engine.
 * `received`: the desired state arrived and is being identified (nothing planned yet).
 */
export type Phase = "received" | "identified" | "downloading" | "downloaded" | "updating" | "updated" | "activating" | "activated" | "rolling-back" | "done";

export interface ActivityAction {
  kind: ActionKind;
  name: string;
  version: string;
  spec?: ContainerSpec;
  /** The container being replaced, updated or destroyed. */
  old?: { id: string; running: boolean; update?: CurrentContainer["update"] };
  /** The image name the new container is created from (after download). */
  image?: string;
  /** The container created by this activity. */
  newId?: string;
  /**
   * The old container's stop was requested (persisted before the request). A stop outlives an
   * agent killed while it waits (the engine ends the container after its stop timeout), so a
   * recovery that finds such a container still running waits for that stop before starting it.
   */
  stopping?: boolean;
  status: ActionStatus;
  progress?: number;
  message?: string;
}

export interface Activity {
  activityId: string;
  /** The desired state's own timestamp (the back end's clock), when it had one. */
  timestamp?: number;
  startedAt: string;
  /** The command flow: wait for DOWNLOAD/UPDATE/ACTIVATE/CLEANUP instead of applying in one step. */
  commandFlow: boolean;
  phase: Phase;
  status: ActivityStatus;
  message?: string;
  actions: ActivityAction[];
}

/** The name an old container carries while its replacement starts (rollback renames it back). */
export const oldName = (name: string, activityId: string) =>
  `${name}.fioup-old-${Bun.hash(activityId).toString(36).slice(0, 8)}`;

/** The feedback for an activity: every action but those left alone. */
export function feedbackOf(a: Activity): Feedback {
  return {
    status: a.status,
    ...(a.message ? { message: a.message } : {}),
    actions: a.actions
      .filter((x) => x.kind !== "keep")
      .map((x) => ({
        component: { id: componentId(x.name), version: x.version },
        status: x.status,
        ...(x.progress !== undefined ? { progress: x.progress } : {}),
        ...(x.message ? { message: x.message } : {}),
      })),
  };
}

/** What is known of the activities that ended: the last ones' ids, and the newest desired state's timestamp. */
export interface Finished {
  /** Newest last; at most {@link FINISHED_KEPT}. */
  activityIds: string[];
  /** The newest timestamp of a desired state that was applied. */
  timestamp?: number;
  /** When the last one ended (ISO). */
  at: string;
  /** The desired-state messages refused for their content, newest last, at most {@link FINISHED_KEPT}. */
  refused?: Refused[];
  /**
   * The ids a file before version 2 held: ended, applied or refused for good (that agent did not
   * tell them apart). Dropped oldest first as new ids fill the {@link FINISHED_KEPT}.
   */
  legacyIds?: string[];
  /** 2 since refusals are kept apart from the applied ids; absent in an older file. */
  version?: 2;
}

/**
 * A desired-state message refused for good: the activityId its refusal went under, and the sha256 of its bytes.
 * `systemContainers`: the agent's configured list, when the refusal came from a component named in
 * it: the message is judged again once that configuration changes.
 */
export interface Refused {
  activityId: string;
  digest: string;
  systemContainers?: string[];
}

/** The agent configuration a refusal may have been judged under. */
export interface JudgedUnder {
  systemContainers: string[];
}

const sameNames = (a: string[], b: string[]) => a.length === b.length && [...a].sort().join("\n") === [...b].sort().join("\n");

/** Ids remembered: enough for a back end that re-publishes a few old ones, small enough to rewrite at every end. */
export const FINISHED_KEPT = 32;

/** `<stateDir>/activity.json`, and `<stateDir>/finished.json` for the activities that ended. */
export class ActivityStore {
  readonly path: string;
  readonly finishedPath: string;

  constructor(dir: string) {
    this.path = join(dir, "activity.json");
    this.finishedPath = join(dir, "finished.json");
  }

  /** The activities that ended (an unreadable file counts as none). */
  finished(): Finished | undefined {
    try {
      const f = JSON.parse(readFileSync(this.finishedPath, "utf8")) as Finished;
      if (!Array.isArray(f?.activityIds)) return undefined;
      if (!Array.isArray(f.refused)) delete f.refused; // written before refusals were recorded, or unreadable
      if (f.version !== 2) return { ...f, version: 2, activityIds: [], legacyIds: f.activityIds };
      if (!Array.isArray(f.legacyIds)) delete f.legacyIds;
      return f;
    } catch {
      return undefined;
    }
  }

  /** Whether the activity ended: applied, or refused for good (a command for it comes too late). */
  ended(activityId: string): boolean {
    const f = this.finished();
    return !!f && (f.activityIds.includes(activityId) || !!f.legacyIds?.includes(activityId) || !!f.refused?.some((r) => r.activityId === activityId));
  }

  /**
   * Whether a desired state is one that ended: its activity was applied, or it is a replay of what
   * an older file recorded (an id there, and not newer than the newest state applied).
   */
  applied(activityId: string, timestamp: number | undefined): boolean {
    const f = this.finished();
    if (!f) return false;
    if (f.activityIds.includes(activityId)) return true;
    return !!f.legacyIds?.includes(activityId) && timestamp !== undefined && f.timestamp !== undefined && timestamp <= f.timestamp;
  }

  /** The refusal of the message whose bytes have this digest, if it was refused for good and still holds under `now`. */
  refusal(digest: string, now: JudgedUnder): Refused | undefined {
    const r = this.finished()?.refused?.find((x) => x.digest === digest);
    return r && (!r.systemContainers || sameNames(r.systemContainers, now.systemContainers)) ? r : undefined;
  }

  /** Records that `a` ended, atomically, before its end is published. */
  markFinished(a: Pick<Activity, "activityId" | "timestamp">): void {
    const f = this.finished();
    const ids = [...(f?.activityIds ?? []).filter((id) => id !== a.activityId), a.activityId].slice(-FINISHED_KEPT);
    const ts = Math.max(f?.timestamp ?? -Infinity, a.timestamp ?? -Infinity);
    this.write({ ...f, activityIds: ids, ...(Number.isFinite(ts) ? { timestamp: ts } : {}) });
  }

  /**
   * Records, before the refusal is published, that the message with this digest was refused for its
   * content: its id and timestamp are not an applied activity's (a corrected message may reuse the
   * id, and a refused timestamp does not make later states stale).
   */
  markRefused(r: Refused): void {
    const f = this.finished();
    const refused = [...(f?.refused ?? []).filter((x) => x.digest !== r.digest), r].slice(-FINISHED_KEPT);
    this.write({ ...f, activityIds: f?.activityIds ?? [], refused });
  }

  private write(f: Omit<Finished, "at">): void {
    const room = FINISHED_KEPT - f.activityIds.length;
    const legacyIds = f.legacyIds?.slice(Math.max(0, f.legacyIds.length - room));
    writeFileAtomicSync(this.finishedPath, JSON.stringify({ ...f, ...(legacyIds?.length ? { legacyIds } : { legacyIds: undefined }), version: 2, at: new Date().toISOString() }));
  }

  /** The persisted activity, or undefined when none was in progress (an unreadable file counts as none). */
  load(): Activity | undefined {
    try {
      const a = JSON.parse(readFileSync(this.path, "utf8")) as Activity;
      return typeof a?.activityId === "string" && Array.isArray(a.actions) ? a : undefined;
    } catch {
      return undefined;
    }
  }

  save(a: Activity): void {
    writeFileAtomicSync(this.path, JSON.stringify(a));
  }

  clear(): void {
    rmSync(this.path, { force: true });
  }
}
