/**
 * The gate before the install step: the bytes are fetched whenever the update
 * is found, but installing waits for the maintenance window and for the update
 * locks to go (docs/formats.md, "Maintenance windows and update locks").
 *
 * - Clock: a device that boots without a battery-backed clock reads 1970 (or its image's build
 *   date) until NTP sets it; a window read on such a clock may look open when it is not, so a
 *   target with a window waits for a clock after EARLIEST_PLAUSIBLE_CLOCK (each check looks again).
 * - Window: the selected target's signed `custom.rollout.window` (the gateway puts
 *   it there for devices in a rollout), else `fioup.install_window`. Its time zone:
 *   the one the spec names, else `fioup.time_zone`, else the device's `timezone`
 *   label (GET /device, remembered for when the gateway is out of reach), else the system's.
 * - Update locks: any file in `<storage.path>/update-locks/` (names starting with
 *   "." are ignored, for atomic writes). Apps bind-mount that directory and drop a
 *   file while they must not be interrupted; `fioup lock`/`fioup unlock` do the same
 *   by hand. Locks defer an update for at most the maximum hold time
 *   (`custom.rollout.maxHold` seconds, else `fioup.max_hold_seconds`, default 24 h)
 *   counted from the first time a lock deferred that target; then the update
 *   proceeds and says so. The window has no maximum: it opens by itself.
 * - Each change of a hold (reason, until, lock names) queues one `UpdateDeferred`
 *   event; the end of a hold queues `UpdateHoldReleased`, so the gateway sees both.
 * - When a hold ends, the signed metadata is checked again first: a target the gateway
 *   no longer offers this device (withdrawn while the device waited) is not installed;
 *   the update is canceled instead (a gateway out of reach does not block the install).
 *
 * @module
 */
import { mkdirSync } from "node:fs";
import type { Config } from "../config.ts";
import type { DeviceDb, UpdateRow } from "../db.ts";
import { currentUpdate, type UpdateContext } from "./context.ts";
import { currentTarget } from "./current-target.ts";
import type { DeviceInfo } from "../../lib/api/index.ts";
import { clockReading, SET_THE_CLOCK } from "../../lib/net/why.ts";
import { checkTimeZone } from "../../lib/schedule/index.ts";
import { decideHold, holdClock, holdPolicy, plausibleClock, TIME_ZONE_LABEL, zoneFromLabel, type HoldDecision, type HoldPolicy, type HoldReason } from "./hold-policy.ts";
import { checkTargets } from "./tuf-check.ts";
import { listUpdateLocks, updateLocksDir } from "./update-locks.ts";
import { eventFor } from "./_events.ts";
import type { Step } from "./step.ts";

/** What fioup remembers of a target's hold (device DB, key `hold:<target>`). */
export interface HoldRecord {
  heldSince: string;
  lockSince?: string;
  reason: HoldReason;
  until?: string;
  locks?: string[];
}

const holdKey = (target: string) => `hold:${target}`;
export const holdRecord = (db: DeviceDb, target: string): HoldRecord | undefined => db.get<HoldRecord>(holdKey(target));

const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString().replace(/\.\d+Z$/, "Z"));

/** What holds an install, as the log and `--force` name it. */
const HELD_BY: Record<HoldReason, string> = { clock: "a clock not yet set", window: "the maintenance window", lock: "update locks" };

/** Why a window is not judged on this clock, for the log and `fioup status`. */
const clockHold = (policy: HoldPolicy, now: number) =>
  `waiting for a trustworthy clock: this machine's clock reads ${clockReading(new Date(now))}, before this release was made, so it cannot tell whether the maintenance window "${policy.window!.spec}" (${policy.zone}) is open; ${SET_THE_CLOCK}, and the next check judges the window`;

/**
 * Installing is deferred: by a clock not yet set (until it is), by the window (until it opens) or
 * by update locks (until released or max hold).
 */
export class UpdateDeferredError extends Error {
  override name = "UpdateDeferredError";
  constructor(
    readonly target: string,
    readonly decision: Extract<HoldDecision, { hold: true }>,
    readonly policy: HoldPolicy,
    now: number,
  ) {
    const until = iso(decision.until);
    super(
      decision.reason === "clock"
        ? `Install of ${target} deferred: ${clockHold(policy, now)}. The update is fetched; use --force to install now`
        : decision.reason === "window"
        ? `Install of ${target} deferred: outside the maintenance window "${policy.window!.spec}" (${policy.zone}); it opens ${until ?? "never in the next 8 days"}. The update is fetched; use --force to install now`
        : `Install of ${target} deferred: held by update lock${decision.locks.length > 1 ? "s" : ""} ${decision.locks.map((l) => `"${l.name}"${l.reason ? ` (${l.reason})` : ""}`).join(", ")} until released, or until ${until} (maximum hold time). The update is fetched; use --force to install now`,
    );
  }
}

/**
 * The gateway stopped offering a target while its install was deferred: the update was canceled.
 * `retagged`: the gateway moved the device to other tags meanwhile (./gateway-tags.ts), which is
 * why; said so, since the target itself may well still be published.
 */
export class UpdateWithdrawnError extends Error {
  override name = "UpdateWithdrawnError";
  constructor(
    readonly target: string,
    readonly retagged?: { from: string[]; to: string[] },
  ) {
    super(
      retagged
        ? `Cannot install ${target}: while the install was deferred the gateway moved this device from tags ${retagged.from.join(",") || "(none)"} to ${retagged.to.join(",")}, which ${target} is not for; the update is canceled`
        : `Cannot install ${target}: the gateway stopped offering it while the install was deferred; the update is canceled`,
    );
  }
}

/**
 * Whether the freshly verified metadata still offers `target` to this device (undefined: cannot
 * tell), and the device's tags before the check when the check adopted new ones from the gateway.
 */
async function stillOffered(ctx: UpdateContext, target: string): Promise<{ offered: boolean; tagsBefore: string[] } | undefined> {
  if (!ctx.client) return undefined;
  const tagsBefore = ctx.cfg.tags;
  try {
    const r = await checkTargets(ctx.cfg, ctx.client, { current: currentTarget(ctx.cfg, ctx.db), badTargets: ctx.db.badTargetMarks() });
    return { offered: target in r.matching, tagsBefore };
  } catch {
    return undefined; // out of reach: the hold is over, install what was verified when it was fetched
  }
}

const LABEL_ZONE_KEY = "label_time_zone";

/**
 * The device's `timezone` label, asked of the gateway (GET /device) and remembered for when it
 * is out of reach; a label that is no time zone is ignored with a warning.
 */
async function labelTimeZone(ctx: UpdateContext): Promise<string | undefined> {
  if (ctx.client) {
    try {
      const label = (await ctx.client.json<DeviceInfo>("GET", "/device"))?.labels?.[TIME_ZONE_LABEL];
      let zone: string | null = null;
      if (label) {
        try {
          zone = checkTimeZone(label);
        } catch (e) {
          ctx.hooks.onInfo?.(`warning: ignoring the device label ${TIME_ZONE_LABEL}: ${(e as Error).message}`);
        }
      }
      ctx.db.set(LABEL_ZONE_KEY, zone);
      return zone ?? undefined;
    } catch {
      // out of reach: the last label seen
    }
  }
  return ctx.db.get<string | null>(LABEL_ZONE_KEY) ?? undefined;
}

/** A hold as `fioup status` shows it: `heldSince` once an update step has deferred the install. */
export type HoldStatus = Omit<HoldRecord, "heldSince"> & {
  heldSince?: string;
  window?: string;
  zone: string;
  /** Reason "clock": what the clock reads and what to do. */
  message?: string;
};

/** The hold of a fetched update as `fioup status` shows it (nothing is saved or sent). */
export function holdStatus(cfg: Config, db: DeviceDb, u: UpdateRow): HoldStatus | undefined {
  if (u.state !== "fetched") return undefined;
  const policy = holdPolicy(cfg, u.target, db.get<string | null>(LABEL_ZONE_KEY) ?? undefined);
  const rec = holdRecord(db, u.toTarget);
  const now = holdClock();
  const d = decideHold(policy, listUpdateLocks(updateLocksDir(cfg)), now, rec?.lockSince ? Date.parse(rec.lockSince) : undefined);
  if (!d.hold) return undefined;
  return {
    ...(rec ? { heldSince: rec.heldSince } : {}),
    ...(rec?.lockSince ? { lockSince: rec.lockSince } : {}),
    reason: d.reason,
    ...(d.until !== undefined ? { until: iso(d.until) } : {}),
    ...(d.reason === "lock" ? { locks: d.locks.map((l) => l.name) } : {}),
    ...(policy.window ? { window: policy.window.spec } : {}),
    zone: policy.zone,
    ...(d.reason === "clock" ? { message: clockHold(policy, now) } : {}),
  };
}

export interface HoldOptions {
  /** Install whatever the window and the locks say (`--force`). */
  force?: boolean;
}

/** The gate: returns when the update may install, else throws UpdateDeferredError (after queuing the event). */
export function holdStep(opts: HoldOptions = {}): Step {
  return {
    name: "hold",
    async run(ctx) {
      const u = currentUpdate(ctx);
      if (u.state !== "fetched") return; // past the gate already (a resumed install), or not fetched (install refuses)
      const now = holdClock();
      const key = holdKey(u.toTarget);
      const rec = ctx.db.get<HoldRecord>(key);
      mkdirSync(updateLocksDir(ctx.cfg), { recursive: true });
      const release = (releasedBy: string) => {
        if (!rec) return;
        // One transaction: the gateway hears of the release exactly when the record goes.
        ctx.db.transaction(() => {
          ctx.db.enqueueEvents([eventFor(u, "UpdateHoldReleased", { details: { heldSince: rec.heldSince, releasedBy } })]);
          ctx.db.delete(key);
        });
      };
      // A deferred install is asked of the gateway again before it goes ahead: a version it withdrew
      // meanwhile (a rollout cancelled or halted, the target removed, the device retagged) is
      // canceled, not installed, --force or not (--force overrides the window and the locks only).
      const dropIfWithdrawn = async () => {
        const offer = rec ? await stillOffered(ctx, u.toTarget) : undefined;
        if (!rec || offer?.offered !== false) return;
        const retagged = offer.tagsBefore === ctx.cfg.tags ? undefined : { from: offer.tagsBefore, to: ctx.cfg.tags };
        ctx.db.transaction(() => {
          ctx.db.delete(key);
          ctx.db.setState(u.id, "canceled", {
            error: retagged ? "the gateway moved the device to other tags while deferred" : "withdrawn by the gateway while deferred",
            events: [eventFor(u, "UpdateHoldReleased", { details: { heldSince: rec.heldSince, releasedBy: "withdrawn" } })],
          });
        });
        throw new UpdateWithdrawnError(u.toTarget, retagged);
      };
      if (opts.force) {
        await dropIfWithdrawn();
        if (rec) ctx.hooks.onInfo?.(`Installing now (--force): the update was deferred by ${HELD_BY[rec.reason]} since ${rec.heldSince}`);
        release("force");
        return;
      }
      // A clock that reads before this release existed is a boot before NTP (1970, or the build
      // date of an image): a lock's hold is not counted from it, or the locks would be overridden
      // the moment NTP sets the time, nor dated by it (heldSince). It counts from when the update was
      // made (its check ran over TLS, so the clock was plausible then). A window is not judged on
      // it at all (decideHold: reason "clock").
      const made = Date.parse(u.createdAt);
      const sane = (t: number) => (Number.isFinite(made) && !plausibleClock(t) ? Math.max(t, made) : t);
      let policy = holdPolicy(ctx.cfg, u.target);
      if (zoneFromLabel(policy, ctx.cfg)) policy = holdPolicy(ctx.cfg, u.target, await labelTimeZone(ctx));
      if (policy.badWindow) ctx.hooks.onInfo?.(`warning: ignoring the target's maintenance window: ${policy.badWindow}`);
      const d = decideHold(policy, listUpdateLocks(updateLocksDir(ctx.cfg)), now, rec?.lockSince ? sane(Date.parse(rec.lockSince)) : undefined);
      if (!d.hold) {
        await dropIfWithdrawn();
        if (d.overriddenLocks) {
          ctx.hooks.onInfo?.(
            `Update lock${d.overriddenLocks.length > 1 ? "s" : ""} ${d.overriddenLocks.map((l) => `"${l.name}"`).join(", ")} held ${u.toTarget} past the maximum hold time of ${policy.maxHoldSeconds} s: installing anyway`,
          );
          release("max-hold");
        } else release(rec?.reason ?? "window");
        return;
      }
      const next: HoldRecord = {
        heldSince: rec?.heldSince ?? iso(sane(now))!,
        ...(rec?.lockSince || d.reason === "lock" ? { lockSince: iso(rec?.lockSince ? sane(Date.parse(rec.lockSince)) : sane(now))! } : {}),
        reason: d.reason,
        ...(d.until !== undefined ? { until: iso(d.until) } : {}),
        ...(d.reason === "lock" ? { locks: d.locks.map((l) => l.name) } : {}),
      };
      // The hold's end as the event says it: in the clock of the event's own deviceTime, which the
      // gateway reads it against (rollouts/evaluate.ts onGatewayClock). On a clock before NTP an end
      // reckoned from a plausible time (the update's making, `sane`) is said as that far from now;
      // else the gateway, adding the 1970 clock's skew, held the device until 2082 and its wave
      // never settled. (An end reckoned from the 1970 clock itself is in its clock already.)
      const untilMs = next.until === undefined ? undefined : Date.parse(next.until);
      const reportedUntil = untilMs !== undefined && !plausibleClock(now) && plausibleClock(untilMs) ? iso(now + (untilMs - sane(now))) : next.until;
      // The event with the record it describes, in one transaction: an event queued without its
      // record is queued again by the next check, a record without its event never sends it.
      ctx.db.transaction(() => {
        if (!rec || rec.reason !== next.reason || rec.until !== next.until || String(rec.locks) !== String(next.locks)) {
          ctx.db.enqueueEvents([
            eventFor(u, "UpdateDeferred", {
              details: {
                reason: d.reason,
                until: reportedUntil ?? null,
                heldSince: next.heldSince,
                ...(policy.window ? { window: policy.window.spec, timeZone: policy.zone } : {}),
                ...(d.reason === "lock" ? { locks: d.locks.map((l) => ({ name: l.name, ...(l.reason ? { reason: l.reason } : {}) })), maxHoldUntil: reportedUntil } : {}),
              },
            }),
          ]);
        }
        ctx.db.set(key, next);
      });
      throw new UpdateDeferredError(u.toTarget, d, policy, now);
    },
  };
}
