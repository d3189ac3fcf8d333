/**
 * Everything a command needs to act as this device, opened once: merged
 * config, device DB, gateway client (when registered) and runtime, plus the
 * update context the steps run in.
 *
 * @module
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { checkTargetNames, ConfigError, configLocation, loadConfig, type Config, type ConfigLocation } from "./config.ts";
import { DeviceDb } from "./db.ts";
import { DeviceClient, NotRegisteredError } from "./device-client.ts";
import { isRegistered } from "./register.ts";
import { Runtime } from "./runtime/index.ts";
import { registryFactory, wantedApps, type UpdateContext, type UpdateHooks } from "./update/context.ts";
import { currentTarget } from "./update/current-target.ts";

export interface Session {
  cfg: Config;
  db: DeviceDb;
  client?: DeviceClient;
  /**
   * A read-only session (status) of a registered device whose registration files are damaged:
   * why there is no client. Status shows it with the rest, where any other command stops on it.
   */
  clientProblem?: string;
  runtime: Runtime;
  ctx(hooks?: UpdateHooks, signal?: AbortSignal): UpdateContext;
  lockPath: string;
  close(): void;
}

export interface SessionOptions {
  "sota-dir"?: string;
  /** Throw NotRegisteredError when the device is not registered. */
  requireRegistration?: boolean;
  /** The command chooses targets: a tag, app or hardware id no target can carry is a ConfigError (checkTargetNames). */
  choosesTargets?: boolean;
  /**
   * The command only reads the device's state (status; early start, which starts apps but records
   * nothing): the state folder must exist (requireDeviceState), and a missing fioup.db is read as
   * empty rather than created, so a mistyped --sota-dir leaves nothing behind.
   */
  readOnly?: boolean;
}

/** The device's state folder is not there: a mistyped --sota-dir, or a device neither preloaded nor registered. */
export class NoDeviceStateError extends Error {
  override name = "NoDeviceStateError";
}

/**
 * Throws unless the folders a command reads the device from exist: the sota dir when one is named
 * (--sota-dir or FIOUP_SOTA_DIR), and, given the config, the storage path (fioup.db, the preloaded
 * target, update locks; the sota dir unless the config moves it). Otherwise a typo would read as an
 * empty, unregistered device, and a command that writes would start a second device state there.
 *
 * @throws {NoDeviceStateError} Naming the folder and where it came from.
 */
export function requireDeviceState(flags: { "sota-dir"?: string }, loc: Required<ConfigLocation>, cfg?: Config): void {
  const named = flags["sota-dir"] !== undefined ? "--sota-dir" : process.env.FIOUP_SOTA_DIR !== undefined ? "FIOUP_SOTA_DIR" : undefined;
  const hint = (dir: string) =>
    dir !== loc.sotaDir ? "is storage.path in the config right?" : named ? `is ${named} right?` : "not registered or preloaded yet? Else give --sota-dir";
  for (const dir of [...(named ? [loc.sotaDir] : []), ...(cfg ? [cfg.storagePath] : [])]) {
    if (!existsSync(dir)) throw new NoDeviceStateError(`no device state in ${dir}: the folder does not exist (${hint(dir)})`);
  }
}

export function openSession(opts: SessionOptions): Session {
  const loc = configLocation(opts);
  const cfg = loadConfig(loc);
  if (opts.choosesTargets) checkTargetNames(cfg);
  const registered = isRegistered(loc.sotaDir) && !!cfg.server;
  if (opts.readOnly) requireDeviceState(opts, loc, cfg);
  if (opts.requireRegistration && !registered) {
    // A named folder that is not there is said as such: "run 'fioup register'" would register the typo.
    requireDeviceState(opts, loc);
    throw new NotRegisteredError(`no registration in ${loc.sotaDir}`);
  }
  const dbPath = join(cfg.storagePath, "fioup.db");
  if (!opts.readOnly) mkdirSync(cfg.storagePath, { recursive: true });
  // Nothing recorded yet reads as an empty database: a read-only command creates none, and opens
  // an existing one only to read it (which works on a full disk too).
  const db = !opts.readOnly ? new DeviceDb(dbPath) : existsSync(dbPath) ? new DeviceDb(dbPath, { readOnly: true }) : new DeviceDb(":memory:");
  // The headers are read anew for each request, the running target from the device DB (one read):
  // the gateway records the device's target from them at each check-in, and another fioup run (a
  // manual `fioup update`, an offline update from a USB stick) may change it while this one, the
  // daemon above all, lives on. The tags are cfg's, which follow the gateway's (update/gateway-tags.ts).
  const ats = () => {
    const current = currentTarget(cfg, db);
    return { tags: cfg.tags, apps: wantedApps(cfg, current).map((a) => a.name), target: current?.name };
  };
  let client: DeviceClient | undefined;
  let clientProblem: string | undefined;
  try {
    client = registered ? DeviceClient.fromConfig(cfg, ats) : undefined;
  } catch (e) {
    if (!opts.readOnly || !(e instanceof ConfigError)) {
      db.close();
      throw e;
    }
    clientProblem = e.message;
  }
  const runtime = new Runtime({
    composeAppsRoot: cfg.composeAppsRoot,
    storeRoot: cfg.resetAppsRoot,
    ...(cfg.dockerHost ? { dockerHost: `unix://${cfg.dockerHost}` } : {}),
  });
  const registry = registryFactory(cfg, client);
  return {
    cfg,
    db,
    client,
    ...(clientProblem ? { clientProblem } : {}),
    runtime,
    lockPath: join(cfg.storagePath, "update.lock"),
    ctx: (hooks = {}, signal) => ({ cfg, db, client, runtime, hooks, signal, registry }),
    close: () => db.close(),
  };
}
