/**
 * What holds an install back, decided: a clock that cannot be trusted to judge a maintenance
 * window (one reading before EARLIEST_PLAUSIBLE_CLOCK) holds a windowed target; else the maintenance window (the target's signed
 * `custom.rollout.window`, else `fioup.install_window`; its own zone, else
 * `fioup.time_zone`, else the device's `timezone` label, else the system's) is checked first, then the update locks,
 * which hold for at most the maximum hold time (`custom.rollout.maxHold` seconds, capped at a
 * year as `fioup.max_hold_seconds` is; else `fioup.max_hold_seconds`) counted from the first lock deferral.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import type { HoldKind, Target } from "../../lib/api/index.ts";
import { isWindowOpen, nextWindowOpening, parseWindow, systemTimeZone, windowZone, type Window } from "../../lib/schedule/index.ts";
import { MAX_HOLD_SECONDS, type Config } from "../config.ts";
import type { UpdateLockInfo } from "./update-locks.ts";

/**
 * Now, for holds: the real clock, or (tests only) the ISO time written in the file that
 * `FIOUP_TEST_NOW_FILE` names, read at every call so a test can move time while fioup runs.
 */
export function holdClock(): number {
  const f = process.env.FIOUP_TEST_NOW_FILE;
  if (f) {
    const t = Date.parse(readFileSync(f, "utf8").trim());
    if (Number.isFinite(t)) return t;
  }
  return Date.now();
}

/**
 * No clock reads earlier than this release's making but one not yet set: a device without a
 * battery-backed clock boots in 1970, or at its image's build date, until NTP sets the time
 * (systemd takes its own build time alike). Such a clock judges no window and counts no hold.
 */
export const EARLIEST_PLAUSIBLE_CLOCK = Date.parse("2026-11-01T00:00:00Z");

/** Whether `now` can be an instant after this release was made (else the clock is not set yet). */
export const plausibleClock = (now: number): boolean => now >= EARLIEST_PLAUSIBLE_CLOCK;

/** What the gateway may add to a target for the devices of a rollout (custom.rollout). */
interface RolloutAnnotation {
  rollout?: string;
  window?: string;
  /** Seconds. */
  maxHold?: number;
}

const rolloutOf = (t: Target): RolloutAnnotation => {
  const r = (t.entry.custom as { rollout?: unknown }).rollout;
  return r && typeof r === "object" ? (r as RolloutAnnotation) : {};
};

/** Where the hold rules for a target come from, resolved. */
export interface HoldPolicy {
  window?: Window;
  /** The zone the window is read in. */
  zone: string;
  maxHoldSeconds: number;
  /** A window in the target that does not parse (the config's applies instead). */
  badWindow?: string;
}

/** The label an admin sets on a device to give it a time zone (`gateway devices label UUID timezone=Europe/Berlin`). */
export const TIME_ZONE_LABEL = "timezone";

/** Whether the zone of the policy would come from the device's label: a window without its own zone and no fioup.time_zone. */
export const zoneFromLabel = (p: HoldPolicy, cfg: Config): boolean => !!p.window && !p.window.zone && !cfg.timeZone;

/** The hold rules for `target`; `labelZone` = the device's `timezone` label, when known. */
export function holdPolicy(cfg: Config, target: Target, labelZone?: string): HoldPolicy {
  const r = rolloutOf(target);
  let window: Window | undefined;
  let badWindow: string | undefined;
  if (typeof r.window === "string" && r.window.trim()) {
    try {
      window = parseWindow(r.window);
    } catch (e) {
      badWindow = (e as Error).message;
    }
  }
  if (!window && cfg.installWindow) window = parseWindow(cfg.installWindow); // checked by loadConfig
  // A signed maxHold past the config's cap (a year) holds for the cap: past ~273,000 years the
  // hold's deadline has no date, and status, events and the update loop would throw on it.
  const maxHoldSeconds = typeof r.maxHold === "number" && r.maxHold >= 0 ? Math.min(r.maxHold, MAX_HOLD_SECONDS) : cfg.maxHoldSeconds;
  const deviceZone = cfg.timeZone ?? labelZone ?? systemTimeZone();
  const zone = window ? windowZone(window, deviceZone) : deviceZone;
  return { ...(window ? { window } : {}), zone, maxHoldSeconds, ...(badWindow ? { badWindow } : {}) };
}

export type HoldDecision =
  | { hold: true; reason: "clock"; until?: undefined }
  | { hold: true; reason: "window"; until?: number }
  | { hold: true; reason: "lock"; until: number; locks: UpdateLockInfo[] }
  | { hold: false; overriddenLocks?: UpdateLockInfo[] };

/** Compiles only while `T` is among lib/api's HOLD_KINDS, the kinds the gateway reads. */
type OneOfHoldKinds<T extends HoldKind> = T;

/** Why an install is held: the clock cannot judge the window yet, the window is closed, or update locks. */
export type HoldReason = OneOfHoldKinds<Extract<HoldDecision, { hold: true }>["reason"]>;

/**
 * Whether to install now: a window read on an implausible clock holds until the clock is set (at
 * 1970 a window may look open when it is not: judged at the next check); a closed window holds
 * until it opens; locks hold until `lockSince + maxHold` (`lockSince` = the first lock deferral,
 * or now), then are overridden.
 */
export function decideHold(p: HoldPolicy, locks: UpdateLockInfo[], now: number, lockSince?: number): HoldDecision {
  if (p.window && !plausibleClock(now)) return { hold: true, reason: "clock" };
  if (p.window && !isWindowOpen(p.window, now, p.zone)) {
    const until = nextWindowOpening(p.window, now, p.zone);
    return { hold: true, reason: "window", ...(until !== undefined ? { until } : {}) };
  }
  if (!locks.length) return { hold: false };
  const deadline = (lockSince ?? now) + p.maxHoldSeconds * 1000;
  if (now < deadline) return { hold: true, reason: "lock", until: deadline, locks };
  return { hold: false, overriddenLocks: locks };
}

