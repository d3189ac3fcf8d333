/**
 * Everything a command needs to act as this device, opened once: merged
 * config, device DB, gateway client (when registered) and runtime, plus the
 * update context the steps run in.
 *
 * @module
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { checkTargetNames, configLocation, loadConfig, type Config } from "./config.ts";
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
}

export function openSession(opts: SessionOptions): Session {
  const loc = configLocation(opts);
  const cfg = loadConfig(loc);
  if (opts.choosesTargets) checkTargetNames(cfg);
  const registered = isRegistered(loc.sotaDir) && !!cfg.server;
  if (opts.requireRegistration && !registered) throw new NotRegisteredError(`no registration in ${loc.sotaDir}`);
  mkdirSync(cfg.storagePath, { recursive: true });
  const db = new DeviceDb(join(cfg.storagePath, "fioup.db"));
  const current = currentTarget(cfg, db);
  const client = registered
    ? DeviceClient.fromConfig(cfg, {
        tags: cfg.tags,
        apps: wantedApps(cfg, current).map((a) => a.name),
        target: current?.name,
      })
    : undefined;
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
    runtime,
    lockPath: join(cfg.storagePath, "update.lock"),
    ctx: (hooks = {}, signal) => ({ cfg, db, client, runtime, hooks, signal, registry }),
    close: () => db.close(),
  };
}
