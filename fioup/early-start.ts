/**
 * Early start: on a device that is not registered yet, start the
 * preloaded apps from the local store as soon as the engine is up, offline.
 * Which apps: `/var/lmp/default-apps` (one per line or comma-separated), else
 * every preloaded app: the `apps` preload wrote beside the target (or the
 * config's shortlist), never an app of the target whose blobs were not baked in.
 *
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { DEFAULT_APPS_FILE, underRoot } from "../lib/device/paths.ts";
import type { Session } from "./session.ts";
import { preloadedTargetFile } from "./update/current-target.ts";

export interface EarlyStartResult {
  skipped?: string;
  target?: string;
  apps: { name: string; ok: boolean; error?: string }[];
}

export function defaultApps(root: string): string[] | undefined {
  const p = underRoot(root, DEFAULT_APPS_FILE);
  if (!existsSync(p)) return undefined;
  return readFileSync(p, "utf8")
    .split(/[\n,]/)
    .map((s) => s.trim())
    .filter((s) => s && !s.startsWith("#"));
}

export async function earlyStart(s: Session, log: (l: string) => void): Promise<EarlyStartResult> {
  if (s.client) return { skipped: "the device is registered: fioup starts its apps", apps: [] };
  const target = preloadedTargetFile(s.cfg);
  if (!target) return { skipped: "no preloaded target", apps: [] };
  // The apps preload baked in: `apps` of the preloaded target, else the config's shortlist, else all.
  const baked = target.apps ?? s.cfg.shortlist;
  const all = Object.entries(target.entry.custom.docker_compose_apps)
    .map(([name, a]) => ({ name, uri: a.uri }))
    .filter((a) => !baked || baked.includes(a.name));
  const only = defaultApps(s.cfg.root);
  const apps = only ? all.filter((a) => only.includes(a.name)) : all;
  const results: EarlyStartResult["apps"] = [];
  // A name the file gives that is not preloaded (a typo, or an app preload did not bake in) starts
  // nothing: said per name, or the device would boot without it and no line would say why.
  for (const name of only?.filter((n) => !all.some((a) => a.name === n)) ?? []) {
    const inTarget = name in target.entry.custom.docker_compose_apps;
    results.push({
      name,
      ok: false,
      error: `${DEFAULT_APPS_FILE} names it, but ${inTarget ? "its blobs were not preloaded (fioup starts it once the device is registered)" : `target ${target.name} has no such app`}; preloaded: ${all.map((a) => a.name).join(", ") || "none"}`,
    });
  }
  const ready: string[] = [];
  for (const app of apps) {
    try {
      await s.runtime.installApp(app, { onProgress: log });
      ready.push(app.name);
    } catch (e) {
      results.push({ name: app.name, ok: false, error: (e as Error).message });
    }
  }
  if (ready.length) {
    for (const r of await s.runtime.startApps(ready, { timeoutMs: 120_000 })) results.push({ name: r.name, ok: r.ok, ...(r.error ? { error: r.error } : {}) });
  }
  return { target: target.name, apps: results };
}
