/**
 * What the device tells the gateway besides update events: apps-states (only
 * when they changed since the last accepted report), and at start the system
 * info, network info and merged config. All best effort: an update
 * never waits on them.
 *
 * Queued events go at the end of a run, and also as its download begins
 * ({@link reportingHooks}): the gateway shows a device "updating" from the
 * download's start (its EcuDownloadStarted), not only once a long fetch ended.
 * One flush at a time per device database: two at once would send the same
 * events twice.
 *
 * @module
 */
import { networkInterfaces, hostname, arch, platform, release, totalmem, cpus } from "node:os";
import type { AppsStates } from "../lib/api/index.ts";
import type { DeviceDb } from "./db.ts";
import type { Session } from "./session.ts";
import { flushEvents } from "./events/sender.ts";
import { wantedApps, type UpdateHooks } from "./update/context.ts";
import { currentTarget } from "./update/current-target.ts";
import { diskFilled } from "./update/fetch-step.ts";
import { stringifyToml } from "../lib/device/sota-toml.ts";
import { FIOUP_VERSION } from "./version.ts";

/** Sends apps-states when they differ from the last report the gateway accepted from this identity. Returns true when sent. */
export async function reportAppsStates(s: Session): Promise<boolean> {
  if (!s.client) return false;
  const names = wantedApps(s.cfg, currentTarget(s.cfg, s.db)).map((a) => a.name);
  const apps = await s.runtime.appsState(names);
  // Kept per identity it was sent as: a device registered again (a new uuid, another gateway)
  // reports to a record that has none yet, though its apps did not change.
  const key = JSON.stringify({ to: `${s.client.server} ${Bun.hash(s.client.tls.cert).toString(36)}`, apps });
  if (s.db.get<string>("last_apps_states") === key) return false;
  const body: AppsStates = { deviceTime: new Date().toISOString(), apps };
  await s.client.json("POST", "/apps-states", body);
  s.db.set("last_apps_states", key);
  return true;
}

function networkInfo() {
  for (const [, addrs] of Object.entries(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.family === "IPv4" && !a.internal) return { hostname: hostname(), mac: a.mac, local_ipv4: a.address };
    }
  }
  return { hostname: hostname(), mac: "00:00:00:00:00:00", local_ipv4: "127.0.0.1" };
}

/** PUT /system_info, /system_info/network and /system_info/config. */
export async function reportSystemInfo(s: Session): Promise<void> {
  if (!s.client) return;
  await s.client.json("PUT", "/system_info", {
    fioup: FIOUP_VERSION,
    hostname: hostname(),
    os: platform(),
    kernel: release(),
    arch: arch(),
    cpus: cpus().length,
    memory: totalmem(),
  });
  await s.client.json("PUT", "/system_info/network", networkInfo());
  await s.client.json("PUT", "/system_info/config", stringifyToml(s.cfg.raw));
}

/** The flush under way for a device database, if any: the next one starts after it. */
const flushing = new WeakMap<DeviceDb, Promise<Error | undefined>>();

/** Sends the queued events, after any flush already under way; the error, if one stopped it, is returned, not thrown. */
export function sendEvents(s: Session): Promise<Error | undefined> {
  const client = s.client;
  if (!client) return Promise.resolve(undefined);
  const run = (flushing.get(s.db) ?? Promise.resolve(undefined))
    .then(() => flushEvents(s.db, client))
    .then(
      (r) => r.error,
      (e: unknown) => e as Error,
    );
  flushing.set(s.db, run);
  return run;
}

/**
 * `hooks`, and the queued events sent (in the background) when the download receives its first
 * bytes: by then the fetch step has queued EcuDownloadStarted. Never awaited: a gateway that does
 * not answer cannot hold up the download, and what is not sent now goes with the run's reportAll.
 */
export function reportingHooks(s: Session, hooks: UpdateHooks): UpdateHooks {
  let sent = false;
  return {
    ...hooks,
    onBlobProgress(p) {
      if (!sent) {
        sent = true;
        void sendEvents(s);
      }
      hooks.onBlobProgress?.(p);
    },
  };
}

/**
 * Flushes queued events and reports app states; errors are returned, not thrown. Where fioup.db's
 * file system is full, what was sent cannot be recorded: said so (SQLite says only "database or
 * disk is full"), and it is sent again once there is room.
 */
export async function reportAll(s: Session): Promise<Error[]> {
  const errors: Error[] = [];
  if (!s.client) return errors;
  const error = await sendEvents(s);
  if (error) errors.push(error);
  try {
    await reportAppsStates(s);
  } catch (e) {
    errors.push(e as Error);
  }
  const full = `fioup.db cannot record what was sent: the file system holding ${s.cfg.storagePath} is full (it is sent again once there is room)`;
  const said = errors.map((e) => (diskFilled(e) ? new Error(full, { cause: e }) : e));
  return [...new Map(said.map((e) => [e.message, e])).values()]; // the events' and the apps-states' alike, once
}
