/**
 * One device's standing in a rollout, decided from what it reported: its update events for the
 * rollout's version, its apps' states and its deferrals. Pure: no I/O, the clock is a parameter.
 *
 * - failed: an EcuInstallationCompleted with success false for the version (install or start
 *   failure, or a rollback), an app of the target unhealthy or exited after the update, or still
 *   pending `pendingTimeoutS` after its wave started (after the version was published or its last
 *   hold ended, if later) while the rollout runs;
 * - succeeded: the update to the version completed and every app of the target reported healthy
 *   (running with a passing or no healthcheck, or a one-shot exited 0) for `healthWindowS`;
 * - pending otherwise.
 *
 * @module
 */
import { HOLD_KINDS, type AppState, type AppsStates, type DeviceEvent } from "../../lib/api/device.ts";
import type { RolloutDeviceStatus, RolloutHold, RolloutRow } from "../../lib/api/admin.ts";
import type { TargetEntry } from "../../lib/api/target.ts";
import { judgeReportedService } from "../../lib/compose/service-verdict.ts";
import { targetMatchesDevice } from "../../lib/tuf/select-target.ts";
import { isCancelEvent } from "../fleet/update-outcome.ts";

/** What the store gives about one pending member (Store.pendingRolloutEvidence). */
export interface DeviceEvidence {
  uuid: string;
  wave: number;
  healthySince: string | null;
  hold: RolloutHold | null;
  /** What the member's row says it waits for (pending) or why it failed; undefined: not known. */
  reason?: string | null;
  /** The device's hardware id and tags, which decide which targets of the version it can install; null: not known. */
  hardwareId?: string | null;
  tags?: string[];
  currentTarget: string | null;
  /** EcuInstallationCompleted, UpdateDeferred and UpdateHoldReleased events since the rollout began, oldest first. */
  events: { receivedAt: string; event: DeviceEvent }[];
  appsStates: AppsStates | null;
  appsStatesAt: string | null;
}

/** What the engine knows of the published targets: name -> version and app uris. */
export interface TargetInfo {
  version: string;
  /** app name -> pinned uri */
  apps: Record<string, string>;
  /** When the target was made (custom.createdAt, which `gateway publish` sets), in ms; undefined if it has none. */
  createdAt?: number;
  /** The published entry, whose hardware ids and tags say which devices can select it; undefined: any device. */
  entry?: TargetEntry;
}

/** The device a publication time is asked for: a version published for amd64 only is not installable on arm64. */
export interface DeviceKind {
  hardwareId?: string | null;
  tags?: readonly string[];
}

/**
 * When the rollout's version became installable on the device, for the pending timeout: Infinity
 * while no target of it for the device's hardware id and tags is published (it cannot install it,
 * so it must not time out: the docs tell operators to create a rollout before publishing, and a
 * build for one hardware id may come later than another's), else the earliest such target's
 * createdAt (-Infinity if one has none, which leaves the wave's start alone). Without a device (or
 * its hardware id), every target of the version counts.
 */
export function publishedAt(targets: ReadonlyMap<string, TargetInfo>, version: string, device: DeviceKind = {}): number {
  let at = Infinity;
  for (const t of targets.values()) {
    if (t.version !== version) continue;
    if (device.hardwareId && t.entry && !targetMatchesDevice(t.entry, device.hardwareId, device.tags ?? [])) continue;
    at = Math.min(at, t.createdAt ?? -Infinity);
  }
  return at;
}

/** What a member waits for while no target of the version is published for it (`rollouts show` lists it). */
export const noTargetYet = (version: string, hardwareId: string | null | undefined) =>
  `no target of version ${version}${hardwareId ? ` for ${hardwareId}` : ""} yet`;

export interface EvaluateContext {
  rollout: Pick<RolloutRow, "targetVersion" | "healthWindowS" | "pendingTimeoutS" | "maxHoldS" | "waveStartedAt" | "waveStarts"> & {
    /** Only a running rollout times devices out: a paused or halted one may be withholding its version. */
    state?: RolloutRow["state"];
  };
  /** Published targets by name. */
  targets: ReadonlyMap<string, TargetInfo>;
  /** {@link publishedAt} of the rollout's version for this device (once per hardware id and tags, not per device); undefined: not considered. */
  publishedAt?: number;
  now: number;
}

/** What changed for the device; undefined fields are unchanged. */
export interface DeviceChange {
  uuid: string;
  status?: RolloutDeviceStatus;
  reason?: string | null;
  healthySince?: string | null;
  hold?: RolloutHold | null;
}

export const COMPLETED = "EcuInstallationCompleted";
export const DEFERRED = "UpdateDeferred";
export const HOLD_RELEASED = "UpdateHoldReleased";

/** details of an event as an object (fioup sends JSON text), or the text itself. */
function details(e: DeviceEvent): Record<string, unknown> | string | undefined {
  const d = e.event.details;
  if (typeof d !== "string") return d;
  try {
    const v = JSON.parse(d);
    return v && typeof v === "object" ? v : d;
  } catch {
    return d;
  }
}

const ms = (iso: string | null | undefined) => (iso ? Date.parse(iso) : NaN);

/** A short reason for a failed update event. */
function failureReason(e: DeviceEvent): string {
  const d = details(e);
  if (d && typeof d === "object") {
    const why = typeof d.error === "string" ? d.error : JSON.stringify(d);
    if ("rolledBackTo" in d) return `rolled back${d.phase ? ` at ${d.phase}` : ""}: ${why}`.slice(0, 300);
    return `update failed: ${why}`.slice(0, 300);
  }
  return `update failed${d ? `: ${d}` : ""}`.slice(0, 300);
}

type AppVerdict = { kind: "healthy" } | { kind: "waiting"; why: string } | { kind: "failed"; why: string };

/**
 * Whether one app is healthy, still coming up (health starting, container created), or failing:
 * each service judged as fioup judges it when it starts the app (lib/compose/service-verdict.ts).
 */
export function appVerdict(name: string, app: AppState): AppVerdict {
  if (app.state === "healthy") return { kind: "healthy" };
  for (const s of app.services) {
    const { verdict, reason } = judgeReportedService(s);
    if (verdict === "failed") return { kind: "failed", why: `app "${name}" is unhealthy: ${reason}` };
  }
  return { kind: "waiting", why: `app "${name}" is starting` };
}

/** The apps of the target as the device reports them, judged: undefined when the report is not of the target yet. */
function appsVerdict(ev: DeviceEvidence, target: TargetInfo | undefined, completedAt: number): AppVerdict | undefined {
  if (target && Object.keys(target.apps).length === 0) return { kind: "healthy" }; // no apps: nothing to watch
  const report = ev.appsStates;
  if (!report) return undefined;
  const names = Object.keys(report.apps);
  if (target) {
    // The report is of the new target when every reported app of it runs the target's uri.
    const ofTarget = names.filter((n) => n in target.apps);
    if (Object.keys(target.apps).length > 0 && ofTarget.length === 0) return undefined;
    if (ofTarget.some((n) => report.apps[n]!.uri !== target.apps[n])) return undefined;
  } else if (!(ms(ev.appsStatesAt) >= completedAt)) return undefined; // target unknown: only a report sent after the update counts
  let waiting: AppVerdict | undefined;
  for (const n of names) {
    const v = appVerdict(n, report.apps[n]!);
    if (v.kind === "failed") return v;
    if (v.kind === "waiting") waiting ??= v;
  }
  return waiting ?? { kind: "healthy" };
}

/**
 * The hold the events say is current (the latest deferral, unless a release came after it), and
 * when the last released hold ended.
 */
function currentHold(ev: DeviceEvidence, version: string, prev: RolloutHold | null): { hold: RolloutHold | null; endedAt: number } {
  let hold = prev;
  let endedAt = NaN;
  for (const { receivedAt, event } of ev.events) {
    if (event.event.version !== undefined && event.event.version !== version) continue;
    const id = event.eventType.id;
    if (id === DEFERRED) {
      const d = details(event);
      const o = d && typeof d === "object" ? d : {};
      // A reason this gateway does not know (a newer fioup's) counts as a lock: the max hold ends it.
      const kind = HOLD_KINDS.find((k) => k === o.reason) ?? "lock";
      // A deferral sent again (each daemon cycle, or a device gone wrong) continues the hold: its
      // bounds count from its first deferral (of this kind for the max hold, of any for MAX_HOLD_MS).
      const at = hold?.kind === kind ? earlier(hold.at, receivedAt) : receivedAt;
      const since = hold ? earlier(hold.since ?? hold.at, receivedAt) : receivedAt;
      hold = { kind, until: typeof o.until === "string" ? onGatewayClock(o.until, event.deviceTime, receivedAt) : null, at, ...(since !== at ? { since } : {}) };
    } else if (id === HOLD_RELEASED || id === COMPLETED) {
      if (hold && ms(receivedAt) >= ms(hold.at)) hold = null;
      if (id === HOLD_RELEASED) endedAt = ms(receivedAt);
    }
  }
  return { hold, endedAt };
}

/**
 * A time the device gave (a hold's end), moved onto the gateway's clock by the device's own skew
 * as of the event that carried it (its deviceTime against when the gateway received it): a device
 * whose clock reads 1970 or runs a day ahead sends ends in its own time, which read as long past
 * (timed out while legitimately held) or far ahead (pending too long). An event sent from a queue
 * after a time offline moves the end later by that delay: the device is given longer, never less.
 */
function onGatewayClock(deviceTimeOfEnd: string, deviceTime: string, receivedAt: string): string {
  const skew = ms(receivedAt) - ms(deviceTime);
  const end = ms(deviceTimeOfEnd);
  // Within minutes it is the event's trip (a queue, a retry), not the clock: the end stays as sent.
  return Number.isFinite(skew) && Number.isFinite(end) && Math.abs(skew) > SKEW_MS ? new Date(end + skew).toISOString() : deviceTimeOfEnd;
}

/** A device clock further off than this from the gateway's, as an event's receipt shows it, is taken as wrong. */
const SKEW_MS = 5 * 60_000;

const sameHold = (a: RolloutHold | null, b: RolloutHold | null) => a?.kind === b?.kind && a?.until === b?.until && a?.at === b?.at && a?.since === b?.since;

const earlier = (a: string, b: string) => (ms(b) < ms(a) ? b : a);

/**
 * The longest a device's hold keeps it pending, from its first deferral, whatever ends it
 * reports: one device (a clock never set, firmware gone wrong, a compromised one) cannot keep its
 * wave from settling for ever. Past it, its pending timeout runs. A week covers any maintenance
 * window (a weekly one opens within 7 days).
 */
export const MAX_HOLD_MS = 7 * 24 * 3600_000;

/**
 * The waves' starts as kept, unless an older gateway moved the rollout since (advanced or resumed
 * it without them: the current wave's entry is then not waveStartedAt); undefined: not kept.
 */
function keptStarts(r: Pick<RolloutRow, "waveStartedAt" | "waveStarts">): string[] | undefined {
  const list = r.waveStarts;
  return list && list.at(-1) === r.waveStartedAt ? list : undefined;
}

/**
 * Each released wave's start (0..wave), for the next patch. A rollout from before they were kept,
 * or last moved by an older gateway, has only waveStartedAt, which then stands for every wave, as
 * it did then.
 */
export function waveStarts(r: Pick<RolloutRow, "wave" | "waveStartedAt" | "waveStarts">): string[] {
  const kept = keptStarts(r);
  return kept?.length === r.wave + 1 ? kept : Array.from({ length: r.wave + 1 }, () => r.waveStartedAt);
}

/** When wave `wave` started: its own start if kept, else the rollout's (current) wave start. */
const waveStart = (r: EvaluateContext["rollout"], wave: number) => keptStarts(r)?.[wave] ?? r.waveStartedAt;

/**
 * When the device's pending timeout ends: its wave's start (or the version's publication, or the
 * end of its last hold, whichever is later) + pendingTimeoutS; never while the version is unpublished.
 */
export function pendingDeadline(ctx: EvaluateContext, hold: RolloutHold | null, holdEndedAt = NaN, wave = Infinity): number {
  let from = Math.max(ms(waveStart(ctx.rollout, wave)), ctx.publishedAt ?? -Infinity);
  if (holdEndedAt > from) from = holdEndedAt;
  if (hold) {
    let end = hold.until ? ms(hold.until) : NaN;
    // Only a lock ends by itself after the max hold (fioup installs then), whatever later end the
    // device says; a window without a known opening, or a clock not set yet, holds until the device
    // says otherwise, for MAX_HOLD_MS at most.
    if (hold.kind === "lock" && ctx.rollout.maxHoldS) end = Math.min(Number.isNaN(end) ? Infinity : end, ms(hold.at) + ctx.rollout.maxHoldS * 1000);
    if (Number.isNaN(end)) end = Infinity;
    from = Math.max(from, Math.min(end, ms(hold.since ?? hold.at) + MAX_HOLD_MS));
  }
  return from + ctx.rollout.pendingTimeoutS * 1000;
}

/** Decides one pending member; returns what changed (undefined: nothing). */
export function evaluateDevice(ev: DeviceEvidence, ctx: EvaluateContext): DeviceChange | undefined {
  const version = ctx.rollout.targetVersion;
  const { hold, endedAt } = currentHold(ev, version, ev.hold);
  const change: DeviceChange = { uuid: ev.uuid };
  if (!sameHold(hold, ev.hold)) change.hold = hold;
  const done = (c: DeviceChange) => (Object.keys(c).length > 1 ? c : undefined);

  // Update results for this version: the first failure decides; else the latest success.
  let completed: { at: number; target: string | undefined } | undefined;
  for (const { receivedAt, event } of ev.events) {
    if (event.eventType.id !== COMPLETED || event.event.version !== version) continue;
    if (event.event.success === false) {
      if (isCancelEvent(event)) continue; // cancelled on the device, not a failure of the update (gateway/fleet/update-outcome.ts)
      return { ...change, status: "failed", reason: failureReason(event), hold: null };
    }
    if (event.event.success === true) completed = { at: ms(receivedAt), target: event.event.targetName };
  }
  const current = ev.currentTarget ? ctx.targets.get(ev.currentTarget) : undefined;
  if (!completed && current?.version === version) completed = { at: ms(ev.appsStatesAt) || ms(waveStart(ctx.rollout, ev.wave)), target: ev.currentTarget! };

  if (completed) {
    const target = completed.target ? ctx.targets.get(completed.target) : undefined;
    const apps = appsVerdict(ev, target, completed.at);
    if (apps?.kind === "failed") return { ...change, status: "failed", reason: apps.why, healthySince: null, hold: null };
    if (apps?.kind === "healthy") {
      const since = ev.healthySince ?? new Date(Math.max(completed.at, ms(ev.appsStatesAt) || completed.at)).toISOString();
      if (ev.healthySince !== since) change.healthySince = since;
      if (ctx.now - ms(since) >= ctx.rollout.healthWindowS * 1000) {
        return { ...change, status: "succeeded", reason: `every app healthy for ${ctx.rollout.healthWindowS} s`, hold: null };
      }
      return done(change);
    }
    if (ev.healthySince !== null) change.healthySince = null; // starting again or not reported yet: the window restarts
  }
  if (!completed && ctx.publishedAt === Infinity) {
    // Its clock has not started: say what it waits for (`rollouts show`), rather than nothing.
    const why = noTargetYet(version, ev.hardwareId);
    if (ev.reason !== why) change.reason = why;
    return done(change);
  }
  if (ev.reason) change.reason = null; // the target it waited for is published
  if ((ctx.rollout.state ?? "running") === "running" && ctx.now >= pendingDeadline(ctx, hold, endedAt, ev.wave)) {
    // A device already past the version never installs it (fioup does not go back): say so, so the operator sees why.
    const newer = !completed && current && Number(current.version) > Number(version) ? `: it runs version ${current.version}, newer (fioup does not go back)` : "";
    const why = completed ? "timeout: updated, but its apps did not report healthy in time" : `timeout: the update did not complete in time${newer}`;
    return { ...change, status: "failed", reason: why };
  }
  return done(change);
}
