/**
 * What every update step gets: config, the device DB, the gateway client, the
 * runtime, registry access and the hooks through which the command (not the
 * step) shows progress. Built once per command or daemon cycle.
 *
 * @module
 */
import type { Target } from "../../lib/api/index.ts";
import type { RegistryClient } from "../../lib/oci/registry-client.ts";
import { registryClients } from "../../lib/oci/registry-clients.ts";
import type { Config } from "../config.ts";
import type { DeviceDb, UpdateRow } from "../db.ts";
import type { DeviceClient } from "../device-client.ts";
import type { Runtime } from "../runtime/index.ts";
import { FIOUP_VERSION } from "../version.ts";

export interface UpdateHooks {
  /** A step starts ("fetch"...). */
  onStep?(name: string, update: UpdateRow): void;
  /**
   * Download progress of one blob (`committed` once verified and in the store); `fetchTotal` = bytes
   * of the whole fetch; `deltaBytes`: the layer was rebuilt from a delta of that size, not fetched whole.
   */
  onBlobProgress?(p: { digest: string; done: number; total: number; index: number; count: number; committed: boolean; fetchTotal: number; deltaBytes?: number }): void;
  /** An app's bundle downloading in the init step (before the fetch step's blobs): `done` of `total` bytes, `done === total` once stored. */
  onBundleProgress?(p: { app: string; done: number; total: number }): void;
  /** A free-form line for humans. */
  onInfo?(line: string): void;
}

/** The subset of the runtime the steps use (the real Runtime, or a stand-in for unit tests). */
export type AppRuntime = Pick<
  Runtime,
  "installApp" | "stageApp" | "swapApp" | "discardStaged" | "dataRoot" | "startApps" | "stopApps" | "removeApp" | "appsState" | "pruneImages" | "installedApps" | "isInstalled"
>;

export interface UpdateContext {
  cfg: Config;
  db: DeviceDb;
  /** undefined when offline / not registered (events are queued only). */
  client?: DeviceClient;
  runtime: AppRuntime;
  hooks: UpdateHooks;
  signal?: AbortSignal;
  /**
   * Where update content comes from: the registry client for a host (cached). Online, the
   * gateway's registry (and others the apps name); for `fioup update --offline` the offline
   * check step swaps in an offline bundle's clients ({@link useBundle}), so init and fetch read
   * the bundle through the same client interface and the same digest checks.
   */
  registry(host: string): RegistryClient;
  /** Set when the content comes from an offline bundle: its directory and id (the sha256 of its index.json). */
  bundle?: { dir: string; id: string };
  /** The update being run (set by the check step or by resuming). */
  updateId?: string;
}

/** Apps of a target that this device runs: all, or those in the shortlist. */
export function wantedApps(cfg: Config, target: Target | undefined): { name: string; uri: string }[] {
  if (!target) return [];
  return Object.entries(target.entry.custom.docker_compose_apps)
    .filter(([name]) => !cfg.shortlist || cfg.shortlist.includes(name))
    .map(([name, a]) => ({ name, uri: a.uri }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/**
 * Registry clients: the gateway's registry with the device certificate; others anonymously,
 * except that a registry using the gateway as its token realm (an external registry) gets its
 * device-scoped token there with the device certificate.
 */
export function registryFactory(cfg: Config, client: DeviceClient | undefined): (host: string) => RegistryClient {
  const gatewayHost = cfg.server ? new URL(cfg.server).host : undefined;
  return registryClients((host) => {
    const device = client ? { ca: client.tls.ca, cert: client.tls.cert, key: client.tls.key } : undefined;
    const isGateway = host === gatewayHost && device;
    const loopback = /^(127\.0\.0\.1|localhost|\[::1\])(:|$)/.test(host);
    return {
      scheme: isGateway || !loopback ? "https" : "http",
      ...(isGateway ? { tls: device } : device && cfg.server ? { realm: { origin: cfg.server, tls: device } } : {}),
    };
  }, { userAgent: `fioup/${FIOUP_VERSION}` });
}

/** Makes the steps read content from an offline bundle instead of the network. */
export function useBundle(ctx: UpdateContext, bundle: { dir: string; id: string }, registry: (host: string) => RegistryClient): void {
  ctx.registry = registry;
  ctx.bundle = { dir: bundle.dir, id: bundle.id };
}

export function currentUpdate(ctx: UpdateContext): UpdateRow {
  if (!ctx.updateId) throw new Error("No update selected");
  const u = ctx.db.getUpdate(ctx.updateId);
  if (!u) throw new Error(`Update ${ctx.updateId} vanished from the database`);
  return u;
}
