/**
 * The rollout tick: runs on the replica holding the signer lease, every few seconds. For each
 * active rollout it settles the pending members of the released waves (evaluate.ts), then, for a
 * running rollout, decides one transition:
 *
 * - halt when failed / released members exceeds max_failures (also while the wave is in progress);
 * - advance to the next wave once the soak time since the wave started has passed and every
 *   released member has settled (succeeded or failed);
 * - complete once the last wave settled.
 *
 * Every transition is an optimistic update (the rollout's revision: an operator's pause on another
 * replica wins over the tick), an event with its reason, and a bump of the signed views so every
 * device sees its new view at its next check. An advance or a completion shows the version to
 * more devices (a completed rollout gates nobody), so it waits while the TUF targets key, which
 * those new versions need, is offline; a halt does not wait (service.ts signs its versions once
 * the key is back). All state is in the database: a restarted gateway resumes where it stopped
 * (the wave start time is kept).
 *
 * @module
 */
import type { RolloutEventKind, RolloutHold } from "../../lib/api/admin.ts";
import type { TargetEntry } from "../../lib/api/target.ts";
import type { RolloutCount, RolloutEventRow, RolloutPatch, RolloutRow, Store } from "../store/types.ts";
import { evaluateDevice, publishedAt, waveStarts, type DeviceEvidence, type TargetInfo } from "./evaluate.ts";

/** A device-deferred rollout event's reason, by the kind of hold the device reported (fioup/update/hold-policy.ts). */
const HOLD_REASONS: Record<RolloutHold["kind"], string> = {
  lock: "deferred by an update lock",
  window: "deferred to the maintenance window",
  clock: "deferred until its clock is set (it reads before the release was made, so it cannot judge the maintenance window)",
};

export type RolloutEventInput = Omit<RolloutEventRow, "id">;

export interface EngineDeps {
  store: Pick<Store, "activeRollouts" | "pendingRolloutEvidence" | "updateRolloutDevices" | "rolloutCounts" | "updateRollout">;
  /** The published targets (TufService.targets). */
  targets: () => Promise<{ targets: Record<string, TargetEntry>; version: number }>;
  /** After a transition: reload this replica's views, re-sign the views' metadata (TufService.bumpViews). */
  changed: () => Promise<unknown>;
  /** Whether the targets metadata a release needs can be signed now (the targets key is held); default yes. */
  canRelease?: () => Promise<boolean>;
  /** Counts a transition (metrics). */
  counted?: (kind: RolloutEventKind) => void;
  log?: (line: string) => void;
  now?: () => number;
}

/** Percent with at most one decimal: 33.3, 5, 0.5. */
export const pct = (x: number) => String(Math.round(x * 10) / 10);

/**
 * {@link pct} of a rate over `limit`, with as many more decimals as it takes to read over it:
 * 101 of 2001 is 5.05%, which one decimal prints as 5, "over the 5% limit".
 */
export function pctOver(x: number, limit: number): string {
  for (let d = 1; d <= 6; d++) {
    const s = String(Math.round(x * 10 ** d) / 10 ** d);
    if (Number(s) > limit) return s;
  }
  return String(x);
}

/**
 * Whether `failed` of `released` devices is over `limitPct` percent: compared as products, not as a
 * quotient, since (7 / 100) * 100 is 7.000000000000001 in floating point and a rollout halted with
 * its rate exactly at the limit ("halts above it", docs/rollouts.md). The tolerance covers the
 * rounding of a fractional limit's product (0.07 * 100), never a whole device.
 */
export const overLimit = (failed: number, released: number, limitPct: number): boolean => failed * 100 > limitPct * released * (1 + 1e-12);

/** "wave 1" or "waves 1-3" (1-based, as operators count). */
export const wavesLabel = (wave: number) => (wave === 0 ? "wave 1" : `waves 1-${wave + 1}`);

/** Totals over the released waves (0..wave) and over the current one. */
export function tally(counts: readonly RolloutCount[], wave: number) {
  const t = { released: 0, failed: 0, succeeded: 0, pending: 0, currentMembers: 0 };
  for (const c of counts) {
    if (c.wave > wave) continue;
    t.released += c.devices;
    t[c.status] += c.devices;
    if (c.wave === wave) t.currentMembers += c.devices;
  }
  return t;
}

/** Members of wave `wave` alone. */
function waveMembers(counts: readonly RolloutCount[], wave: number): number {
  return counts.filter((c) => c.wave === wave).reduce((n, c) => n + c.devices, 0);
}

/** Failures that count against the limit: those beyond the ones an operator accepted by resuming. */
export function countedFailures(r: RolloutRow, failed: number): number {
  return Math.max(0, failed - r.acknowledgedFailures);
}

export class RolloutEngine {
  readonly #now: () => number;
  #targetsVersion = -1;
  #targets = new Map<string, TargetInfo>();
  /** Rollouts whose due advance or completion waits for the targets key: said once each, in the log. */
  readonly #waitingForKey = new Set<string>();

  constructor(private readonly deps: EngineDeps) {
    this.#now = deps.now ?? Date.now;
  }

  async #targetInfo(): Promise<ReadonlyMap<string, TargetInfo>> {
    const { targets, version } = await this.deps.targets();
    if (version !== this.#targetsVersion) {
      const m = new Map<string, TargetInfo>();
      for (const [name, e] of Object.entries(targets)) {
        const apps: Record<string, string> = {};
        for (const [app, ref] of Object.entries(e.custom?.docker_compose_apps ?? {})) apps[app] = ref.uri;
        const createdAt = Date.parse(e.custom?.createdAt ?? "");
        m.set(name, { version: String(e.custom?.version), apps, entry: e, ...(Number.isNaN(createdAt) ? {} : { createdAt }) });
      }
      this.#targets = m;
      this.#targetsVersion = version;
    }
    return this.#targets;
  }

  /** One pass over every active rollout; returns how many rollouts changed state or wave. */
  async tick(): Promise<number> {
    const rollouts = await this.deps.store.activeRollouts();
    if (rollouts.length === 0) return 0;
    const targets = await this.#targetInfo();
    let transitions = 0;
    for (const r of rollouts) {
      try {
        if (await this.#step(r, targets)) transitions++;
      } catch (e) {
        // One rollout's trouble (a database hiccup) must not stop the others; the next tick retries.
        this.deps.log?.(`rollout ${r.id}: tick failed: ${(e as Error).message}`);
      }
    }
    if (transitions) await this.deps.changed();
    return transitions;
  }

  async #step(r: RolloutRow, targets: ReadonlyMap<string, TargetInfo>): Promise<boolean> {
    const { store } = this.deps;
    const now = this.#now();
    const at = new Date(now).toISOString();
    // 1. Settle the pending members of the released waves (paused and halted rollouts too: `show` stays true).
    const evidence = (await store.pendingRolloutEvidence(r.id, r.wave)) as DeviceEvidence[];
    const changes = [];
    const events: RolloutEventInput[] = [];
    // Per hardware id and tags: a version published for amd64 only is not installable on arm64 yet.
    const published = new Map<string, number>();
    const publishedFor = (ev: DeviceEvidence) => {
      const key = JSON.stringify([ev.hardwareId ?? null, ev.tags ?? []]);
      let at = published.get(key);
      if (at === undefined) published.set(key, (at = publishedAt(targets, r.targetVersion, ev)));
      return at;
    };
    for (const ev of evidence) {
      const c = evaluateDevice(ev, { rollout: r, targets, publishedAt: publishedFor(ev), now });
      if (!c) continue;
      changes.push({ ...c, updatedAt: at });
      const base = { rolloutId: r.id, at, wave: ev.wave, deviceUuid: ev.uuid };
      if (c.status === "succeeded") events.push({ ...base, kind: "device-succeeded", reason: c.reason ?? "succeeded" });
      else if (c.status === "failed") events.push({ ...base, kind: "device-failed", reason: c.reason ?? "failed" });
      else if (c.hold) {
        const until = c.hold.until ? ` until ${c.hold.until}` : "";
        events.push({ ...base, kind: "device-deferred", reason: HOLD_REASONS[c.hold.kind] + until });
      }
    }
    // Only if the rollout is still as read: a pause committed meanwhile (nobody times out while
    // paused) must not be overtaken by timeouts judged as running; the next tick judges again. The
    // verdicts' events in the same transaction: written after, a failure between lost them for good
    // (the next tick does not judge a settled device again).
    if (changes.length && !(await store.updateRolloutDevices(r.id, changes, { revision: r.revision, events }))) return false;
    for (const e of events) this.deps.counted?.(e.kind);
    if (r.state !== "running") return false;

    // 2. One transition at most.
    const counts = await store.rolloutCounts(r.id);
    const t = tally(counts, r.wave);
    const failed = countedFailures(r, t.failed);
    const rate = t.released ? (failed / t.released) * 100 : 0;
    // Failures an operator accepted by resuming are named apart, so "5 failed (0%)" never reads as a contradiction.
    const accepted = t.failed - failed;
    const notCounting = accepted ? `, not counting the ${accepted} accepted on resume` : "";
    if (overLimit(failed, t.released, r.maxFailuresPct)) {
      // The limit as it was given (0.25%, not rounded to 0.3).
      const reason = `halted at ${pctOver(rate, r.maxFailuresPct)}% failures (${failed} of ${t.released} devices in ${wavesLabel(r.wave)}${notCounting}), over the ${r.maxFailuresPct}% limit`;
      return this.transition(r, { state: "halted", reason }, [{ kind: "halted", wave: r.wave, reason }]);
    }
    if (t.pending > 0 || now - Date.parse(r.waveStartedAt) < r.soakS * 1000) return false;
    if (!(await this.#mayRelease(r))) return false;
    const summary = `${t.succeeded} succeeded, ${t.failed} failed (${accepted ? `${accepted} accepted on resume, ${pct(rate)}% counted` : `${pct(rate)}%`})`;
    if (r.wave >= r.waves.length - 1) {
      const reason = `completed: all ${t.released} devices settled, ${summary}`;
      return this.transition(r, { state: "completed", reason }, [{ kind: "completed", wave: r.wave, reason }]);
    }
    const next = r.wave + 1;
    const reason = `wave ${r.wave + 1} settled and soaked ${r.soakS} s: ${summary}`;
    return this.transition(r, { wave: next, waveStartedAt: at, waveStarts: [...waveStarts(r), at], reason }, [
      { kind: "wave-advanced", wave: r.wave, reason },
      { kind: "wave-started", wave: next, reason: waveStartedReason(counts, next, r.waves[next]!) },
    ]);
  }

  /**
   * Whether the rollout's due advance or completion may be committed now: not while the targets
   * key is offline, or it would be committed without the new versions that show it to devices.
   */
  async #mayRelease(r: RolloutRow): Promise<boolean> {
    if (!this.deps.canRelease || (await this.deps.canRelease())) {
      this.#waitingForKey.delete(r.id);
      return true;
    }
    if (!this.#waitingForKey.has(r.id)) {
      this.#waitingForKey.add(r.id);
      const what = r.wave >= r.waves.length - 1 ? "its completion" : `wave ${r.wave + 2}`;
      this.deps.log?.(`rollout ${r.id}: ${what} is due, but waits: the TUF targets key is offline (put it back into the gateway's tuf/keys/, docs/keys.md)`);
    }
    return false;
  }

  /**
   * Applies a transition and records its events, in one transaction, if nobody changed the rollout
   * since `r` was read. false: the rollout moved meanwhile (the next tick sees the new state).
   */
  async transition(r: RolloutRow, patch: RolloutPatch, events: Omit<RolloutEventInput, "rolloutId" | "at" | "deviceUuid">[]): Promise<boolean> {
    const at = patch.updatedAt ?? new Date(this.#now()).toISOString();
    const rows = events.map((e) => ({ ...e, rolloutId: r.id, at, deviceUuid: null }));
    const updated = await this.deps.store.updateRollout(r.id, r.revision, { ...patch, updatedAt: at }, rows);
    if (!updated) return false;
    for (const e of events) {
      this.deps.counted?.(e.kind);
      this.deps.log?.(`rollout ${r.id}: ${e.kind}: ${e.reason}`);
    }
    return true;
  }
}

/** "wave 2 released: 18 more devices (21 of 202, 10%)". */
export function waveStartedReason(counts: readonly RolloutCount[], wave: number, percent: number): string {
  const added = waveMembers(counts, wave);
  const total = counts.reduce((n, c) => n + c.devices, 0);
  const upTo = counts.filter((c) => c.wave <= wave).reduce((n, c) => n + c.devices, 0);
  return `wave ${wave + 1} released: ${added} more device${added === 1 ? "" : "s"} (${upTo} of ${total}, ${pct(percent)}%)`;
}
