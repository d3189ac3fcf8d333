/**
 * Early start: on a device that is not registered yet, start the
 * preloaded apps from the local store as soon as the engine is up, offline.
 * Which apps: `/var/lmp/default-apps` (one per line or comma-separated), else
 * every preloaded app, and only apps of the device's shortlist whose blobs were
 * baked in (the `apps` preload wrote beside the target): an app outside the
 * shortlist started here would run until registration and then be stopped, and
 * one without blobs cannot start offline. A name the file gives that cannot be
 * started is said with what will really become of it. An app an earlier boot installed is
 * started as it is, not installed again.
 *
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { listFileText } from "../lib/cli/comma-list.ts";
import { DEFAULT_APPS_FILE, underRoot } from "../lib/device/paths.ts";
import type { PreloadedTarget } from "../lib/device/preloaded-target.ts";
import type { Session } from "./session.ts";
import { wantedApps } from "./update/context.ts";
import { preloadedTargetFile } from "./update/current-target.ts";

export interface EarlyStartResult {
  skipped?: string;
  target?: string;
  apps: { name: string; ok: boolean; error?: string }[];
}

export function defaultApps(root: string): string[] | undefined {
  const p = underRoot(root, DEFAULT_APPS_FILE);
  if (!existsSync(p)) return undefined;
  return listFileText(readFileSync(p, "utf8"));
}

export async function earlyStart(s: Session, log: (l: string) => void): Promise<EarlyStartResult> {
  if (s.client) return { skipped: "the device is registered: fioup starts its apps", apps: [] };
  const target = preloadedTargetFile(s.cfg);
  if (!target) return { skipped: "no preloaded target", apps: [] };
  // The apps fioup runs once registered (the shortlist, the same rule as convergence), of those whose blobs preload baked in.
  const all = wantedApps(s.cfg, target).filter((a) => !target.apps || target.apps.includes(a.name));
  const only = defaultApps(s.cfg.root);
  const apps = only ? all.filter((a) => only.includes(a.name)) : all;
  const results: EarlyStartResult["apps"] = [];
  // A name the file gives that is not startable (a typo, an app outside the shortlist, or one preload
  // did not bake in) starts nothing: said per name with what will become of it, or the device would
  // boot without it and no line would say why.
  for (const name of only?.filter((n) => !all.some((a) => a.name === n)) ?? []) {
    results.push({ name, ok: false, error: `${DEFAULT_APPS_FILE} names it, but ${notStarted(name, target, s.cfg.shortlist)}; preloaded and shortlisted: ${all.map((a) => a.name).join(", ") || "none"}` });
  }
  const ready: string[] = [];
  for (const app of apps) {
    try {
      // Installed by an earlier boot, it is left as it is: dockerd may have restarted its
      // containers already, bind-mounting its dir, which a reinstall would replace under them
      // (and with it whatever they wrote there). Another version of it is stopped first.
      if (!(await s.runtime.isInstalled(app))) {
        if ((await s.runtime.installedApps()).some((a) => a.name === app.name)) await s.runtime.stopApps([app.name]);
        await s.runtime.installApp(app, { onProgress: log });
      }
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

/** Why an app `/var/lmp/default-apps` names is not started, and what will really become of it. */
function notStarted(name: string, target: PreloadedTarget, shortlist: string[] | undefined): string {
  if (!(name in target.entry.custom.docker_compose_apps)) return `it is unknown: target ${target.name} has no app of that name`;
  if (shortlist && !shortlist.includes(name))
    return `it is outside the device's app shortlist (${shortlist.join(", ") || "none"}): fioup does not start it, before registration or after`;
  return `its blobs were not preloaded: it cannot start offline, and fioup starts it only once an update fetches it (a target newer than ${target.name})`;
}
