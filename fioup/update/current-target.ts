/**
 * The target the device runs: the last completed update's, from the DB; on the
 * first run after preload, the preloaded target (lib/device/preloaded-target.ts),
 * so the first real update reuses preloaded blobs and never "downgrades" below it.
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
