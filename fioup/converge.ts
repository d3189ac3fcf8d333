/**
 * Convergence: make the running apps match the current target and the app
 * shortlist without waiting for a new target. Run after registration and at
 * every daemon start, so a preloaded device whose early start ran only the
 * apps of /var/lmp/default-apps brings up the rest of its shortlist, and apps
 * dropped from the shortlist stop. An update in progress decides for itself;
 * convergence then does nothing. Uses only what the runtime already offers
 * (install from the local store, start, stop, state).
 *
 * @module
 */
import type { AppState } from "../lib/api/device.ts";
import { LockedError } from "../lib/fs/pid-lock.ts";
import { takeUpdateLock, UpdateLockBusyError } from "./update/update-lock.ts";
import type { Session } from "./session.ts";
import { wantedApps } from "./update/context.ts";
import { currentTarget } from "./update/current-target.ts";

/** How `fioup status` shows an app of the current target. */
export type AppStatus = "running" | "stopped" | "outside the shortlist";

export interface AppStatusReport {
  name: string;
  uri: string;
  status: AppStatus;
  /** Some of its containers run (for an app outside the shortlist: convergence will stop it). */
  containersRunning: boolean;
}

export interface ConvergeResult {
  /** Why nothing was done. */
  skipped?: string;
  target?: string;
  /** Installed from the local store (their blobs were there: preloaded or fetched earlier). */
  installed: string[];
  started: string[];
  stopped: string[];
  failed: { name: string; error: string }[];
}

type Parts = Pick<Session, "cfg" | "db" | "runtime">;

const anyRunning = (s: AppState | undefined) => !!s?.services.some((svc) => svc.state === "running" || svc.state === "restarting");
/** Up as the gateway sees it: every service running (healthy where checked) or a one-shot that exited 0. */
const isUp = (s: AppState | undefined, uri: string) => s?.state === "healthy" && s.uri === uri;

/**
 * Each app of the current target: running, stopped, or outside the shortlist.
 *
 * @throws {EngineError} If the container engine cannot be asked.
 */
export async function appStatuses(s: Parts): Promise<AppStatusReport[]> {
  const target = currentTarget(s.cfg, s.db);
  if (!target) return [];
  const wanted = new Set(wantedApps(s.cfg, target).map((a) => a.name));
  const states = await s.runtime.appsState();
  return Object.entries(target.entry.custom.docker_compose_apps)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, { uri }]) => ({
      name,
      uri,
      status: !wanted.has(name) ? "outside the shortlist" : isUp(states[name], uri) ? "running" : "stopped",
      containersRunning: anyRunning(states[name]),
    }));
}

/**
 * Starts the shortlisted apps of the current target that are not up
 * (installing them from the local store first when needed) and stops the
 * installed apps that are no longer wanted. Holds the update lock while it
 * works. Never throws for one app: its failure is in `failed`.
 *
 * @throws {EngineError | ComposeNotFoundError} If the container engine cannot be used at all.
 */
export async function converge(s: Parts & Pick<Session, "lockPath">, log: (line: string) => void = () => {}): Promise<ConvergeResult> {
  const result: ConvergeResult = { installed: [], started: [], stopped: [], failed: [] };
  if (s.db.pendingUpdate()) return { ...result, skipped: "an update is in progress: it decides which apps run" };
  const target = currentTarget(s.cfg, s.db);
  if (!target) return { ...result, skipped: "no current target" };
  let lock;
  try {
    lock = takeUpdateLock(s.lockPath, "start the apps of the current target");
  } catch (e) {
    if (e instanceof UpdateLockBusyError) return { ...result, skipped: e.brief };
    if (e instanceof LockedError) return { ...result, skipped: e.message };
    throw e;
  }
  try {
    result.target = target.name;
    const wanted = wantedApps(s.cfg, target);
    const names = new Set(wanted.map((a) => a.name));
    const states = await s.runtime.appsState();

    const installedApps = await s.runtime.installedApps();
    const unwanted = installedApps.filter((a) => !names.has(a.name) && anyRunning(states[a.name])).map((a) => a.name);
    if (unwanted.length) {
      log(`stopping ${unwanted.join(", ")}: not in the shortlist of ${target.name}`);
      await s.runtime.stopApps(unwanted);
      result.stopped.push(...unwanted);
    }

    const toStart: string[] = [];
    for (const app of wanted) {
      if (isUp(states[app.name], app.uri)) continue;
      if (!(await s.runtime.isInstalled(app))) {
        // Another version of it runs: its containers bind-mount the directory a reinstall replaces.
        const other = installedApps.find((a) => a.name === app.name && a.uri !== app.uri);
        if (other && anyRunning(states[app.name])) {
          await s.runtime.stopApps([app.name]);
          result.stopped.push(app.name);
        }
        try {
          await s.runtime.installApp(app, { onProgress: log });
          result.installed.push(app.name);
        } catch (e) {
          result.failed.push({ name: app.name, error: `Cannot install ${app.name} from the local store: ${(e as Error).message}` });
          continue;
        }
      }
      toStart.push(app.name);
    }
    if (toStart.length) {
      log(`starting ${toStart.join(", ")} of ${target.name}`);
      for (const r of await s.runtime.startApps(toStart, { timeoutMs: 120_000 })) {
        if (r.ok) result.started.push(r.name);
        else result.failed.push({ name: r.name, error: r.error ?? "not running" });
      }
    }
    return result;
  } finally {
    lock.release();
  }
}

/** One line for logs: what convergence did. */
export function describeConverge(r: ConvergeResult): string {
  if (r.skipped) return `apps: nothing to converge (${r.skipped})`;
  const parts = [
    ...(r.started.length ? [`started ${r.started.join(", ")}`] : []),
    ...(r.stopped.length ? [`stopped ${r.stopped.join(", ")}`] : []),
    ...r.failed.map((f) => `${f.name} failed: ${f.error}`),
  ];
  return `apps of ${r.target}: ${parts.length ? parts.join("; ") : "already as wanted"}`;
}
