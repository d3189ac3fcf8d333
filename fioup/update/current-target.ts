/**
 * The target the device runs: the last completed update's, from the DB; on the
 * first run after preload, the preloaded target (`<storage.path>/preload/target.json`),
 * so the first real update reuses preloaded blobs and never "downgrades" below it.
 *
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { Value } from "@sinclair/typebox/value";
import { TargetEntry, type Target } from "../../lib/api/index.ts";
import type { Config } from "../config.ts";
import type { DeviceDb } from "../db.ts";

export function preloadedTargetPath(cfg: Config): string {
  return join(cfg.storagePath, "preload", "target.json");
}

/** The preloaded target, if preload wrote a valid one. */
export function preloadedTarget(cfg: Config): Target | undefined {
  const p = preloadedTargetPath(cfg);
  if (!existsSync(p)) return undefined;
  try {
    const t = JSON.parse(readFileSync(p, "utf8")) as { name?: unknown; entry?: unknown };
    if (typeof t.name === "string" && Value.Check(TargetEntry, t.entry)) return { name: t.name, entry: t.entry };
  } catch {
    // unreadable: treat as no preload
  }
  return undefined;
}

export function currentTarget(cfg: Config, db: DeviceDb): Target | undefined {
  return db.currentTarget() ?? preloadedTarget(cfg);
}
