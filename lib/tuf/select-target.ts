/**
 * Device-side target selection (docs/formats.md, aktualizr-lite's rules), shared by
 * fioup and preload so both pick the same target from the same targets.json.
 *
 * @module
 */
import { targetContent, targetVersionNumber as num, type Target, type TargetEntry } from "../api/target.ts";

/**
 * The targets a device marked bad: name → the content that failed ({@link targetContent}), or
 * null when that is not known (a mark older than the record): then the name alone counts.
 */
export type BadTargets = ReadonlyMap<string, string | null>;

/** Whether `entry`, named `name`, is what the device marked bad: the same name and the same content. */
export function isBadTarget(bad: BadTargets | undefined, name: string, entry: TargetEntry): boolean {
  if (!bad?.has(name)) return false;
  const content = bad.get(name);
  return content == null || content === targetContent(entry);
}

export interface SelectTargetOptions {
  /** The device's hardware id: a target must list it in `custom.hardwareIds`. */
  hwid: string;
  /** The device's tags: a target must share one. Empty: any target matches. */
  tags: readonly string[];
  /** Version of the running target: never go below it unless `version` is named. */
  currentVersion?: string | number;
  /** Targets this device marked bad (failed install/start): skipped, so a newer one (or the same name with other content) is needed. */
  badTargets?: BadTargets;
  /** An explicitly requested version: that one, even if older than the current one or marked bad. */
  version?: string | number;
}

/** Whether a target is for this device (hardware id and tags), whatever its version. */
export function targetMatchesDevice(entry: TargetEntry, hwid: string, tags: readonly string[]): boolean {
  const c = entry.custom;
  if (!Array.isArray(c?.hardwareIds) || !c.hardwareIds.includes(hwid)) return false;
  if (tags.length === 0) return true;
  return Array.isArray(c.tags) && c.tags.some((t) => tags.includes(t));
}

/**
 * Picks the target to run: the highest version for this device, or the named version.
 * Returns `undefined` when none fits, or when the best one is older than the running version
 * (no downgrade). A result equal to the running version means "up to date".
 * Ties (same version under several names) go to the smallest name, so the choice is stable.
 *
 * @example
 * ```ts
 * selectTarget(targets, { hwid: "arm64-linux", tags: ["main"], currentVersion: "41" })?.name; // "arm64-linux-42"
 * ```
 */
export function selectTarget(targets: Record<string, TargetEntry>, opts: SelectTargetOptions): Target | undefined {
  const wanted = opts.version === undefined ? undefined : num(opts.version);
  if (opts.version !== undefined && wanted === undefined) return undefined;
  let best: { name: string; entry: TargetEntry; v: number } | undefined;
  for (const name of Object.keys(targets).sort()) {
    const entry = targets[name]!;
    const v = num(entry?.custom?.version);
    if (v === undefined || !targetMatchesDevice(entry, opts.hwid, opts.tags)) continue;
    if (wanted !== undefined) {
      if (v !== wanted) continue;
    } else if (isBadTarget(opts.badTargets, name, entry)) continue;
    if (!best || v > best.v) best = { name, entry, v };
  }
  if (!best) return undefined;
  const current = num(opts.currentVersion);
  if (wanted === undefined && current !== undefined && best.v < current) return undefined;
  return { name: best.name, entry: best.entry };
}
