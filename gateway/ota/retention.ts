/**
 * Keeps targets.json bounded: at most N targets per hardware id, the newest
 * by numeric `custom.version`. A target naming several hardware ids stays
 * while it is among the newest N of any of them.
 *
 * @module
 */
import { targetVersionNumber, type TargetEntry } from "../../lib/api/target.ts";

export const DEFAULT_MAX_TARGETS_PER_HWID = 50;

const versionOf = (e: TargetEntry): number => targetVersionNumber(e?.custom?.version) ?? -1;

/**
 * Splits targets into those kept and the names pruned.
 *
 * @example
 * ```ts
 * pruneTargets(targets, 50).pruned; // ["rpi-1", ...] oldest beyond the 50 newest per hwid
 * ```
 */
export function pruneTargets(
  targets: Record<string, TargetEntry>,
  maxPerHwid: number = DEFAULT_MAX_TARGETS_PER_HWID,
): { kept: Record<string, TargetEntry>; pruned: string[] } {
  const byHwid = new Map<string, string[]>();
  for (const [name, e] of Object.entries(targets)) {
    for (const hw of e.custom?.hardwareIds ?? []) {
      const list = byHwid.get(hw) ?? [];
      list.push(name);
      byHwid.set(hw, list);
    }
  }
  const keep = new Set<string>();
  for (const names of byHwid.values()) {
    names.sort((a, b) => versionOf(targets[b]!) - versionOf(targets[a]!) || (a < b ? -1 : a > b ? 1 : 0));
    for (const n of names.slice(0, maxPerHwid)) keep.add(n);
  }
  const kept: Record<string, TargetEntry> = {};
  const pruned: string[] = [];
  for (const [name, e] of Object.entries(targets)) {
    // A target without hardware ids cannot be selected by any device: it is dropped too.
    if (keep.has(name)) kept[name] = e;
    else pruned.push(name);
  }
  return { kept, pruned: pruned.sort() };
}
