/**
 * The target the device runs: the last completed update's, from the DB; on the
 * first run after preload, the preloaded target (lib/device/preloaded-target.ts),
 * so the first real update reuses preloaded blobs and never "downgrades" below it. And whether
 * that target is for the hardware id the device registered with ({@link hardwareIdMismatch}).
 *
 * @module
 */
import type { Target } from "../../lib/api/index.ts";
import { preloadedTargetPath } from "../../lib/device/paths.ts";
import { readPreloadedTarget, type PreloadedTarget } from "../../lib/device/preloaded-target.ts";
import type { Config } from "../config.ts";
import type { DeviceDb } from "../db.ts";

/** What preload baked in, or undefined if there is none or it is unreadable (then the device acts as not preloaded). */
export function preloadedTargetFile(cfg: Config): PreloadedTarget | undefined {
  try {
    return readPreloadedTarget(preloadedTargetPath(cfg.storagePath));
  } catch {
    return undefined;
  }
}

/** The preloaded target, if preload wrote a valid one. */
export function preloadedTarget(cfg: Config): Target | undefined {
  const t = preloadedTargetFile(cfg);
  return t && { name: t.name, entry: t.entry };
}

export function currentTarget(cfg: Config, db: DeviceDb): Target | undefined {
  return db.currentTarget() ?? preloadedTarget(cfg);
}

/**
 * Said when the target the device runs is not for the hardware id it registered with (a preloaded
 * device registered under another id): no target of that line is ever offered to it, and without
 * this line the check reads as an up-to-date device. `fioup check` says it (on stderr, and in its
 * result's `warning`).
 *
 * @example
 * ```ts
 * hardwareIdMismatch("arm64-linux", current); // undefined when current is for arm64-linux (or there is none)
 * ```
 */
export function hardwareIdMismatch(hwid: string | undefined, current: Target | undefined): string | undefined {
  const ids = current?.entry.custom.hardwareIds;
  if (!hwid || !current || !ids?.length || ids.includes(hwid)) return undefined;
  return (
    `this device is registered with hardware id ${hwid}, but the target it runs, ${current.name}, is for ${ids.join(", ")}: ` +
    `no update of ${current.name}'s line is offered to it. If ${ids.length === 1 ? ids[0] : "one of them"} is its hardware id, register again: ` +
    `fioup register --force --hwid ${ids[0]} --server URL --token TOKEN`
  );
}
