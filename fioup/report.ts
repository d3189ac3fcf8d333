/**
 * What the device tells the gateway besides update events: apps-states (only
 * when they changed since the last accepted report), and at start the system
 * info, network info and merged config. All best effort: an update
 * never waits on them.
 *
 * @module
 */
import { networkInterfaces, hostname, arch, platform, release, totalmem, cpus } from "node:os";
import type { AppsStates } from "../lib/api/index.ts";
import type { Session } from "./session.ts";
import { flushEvents } from "./events/sender.ts";
import { wantedApps } from "./update/context.ts";
import { currentTarget } from "./update/current-target.ts";
import { stringifyToml } from "../lib/device/sota-toml.ts";
import { FIOUP_VERSION } from "./version.ts";

/** Sends apps-states when they differ from the last accepted report. Returns true when sent. */
export async function reportAppsStates(s: Session): Promise<boolean> {
  if (!s.client) return false;
  const names = wantedApps(s.cfg, currentTarget(s.cfg, s.db)).map((a) => a.name);
  const apps = await s.runtime.appsState(names);
  const key = JSON.stringify(apps);
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

/** Flushes queued events and reports app states; errors are returned, not thrown. */
export async function reportAll(s: Session): Promise<Error[]> {
  const errors: Error[] = [];
  if (!s.client) return errors;
  const r = await flushEvents(s.db, s.client);
  if (r.error) errors.push(r.error);
  try {
    await reportAppsStates(s);
  } catch (e) {
    errors.push(e as Error);
  }
  return errors;
}
