/**
 * Where things live on a device: the defaults fioup falls back to and preload
 * bakes into an image. A device directory can sit under a prefix (FIOUP_ROOT in
 * tests, the image tree in preload); these are the paths as the device sees them.
 *
 * @module
 */
import { isAbsolute, join } from "node:path";

/** Where fioup keeps its state, blobs and extracted apps (`[storage] path`, `[pacman] reset_apps_root`, `compose_apps_root`). */
export interface DevicePaths {
  storagePath: string;
  resetAppsRoot: string;
  composeAppsRoot: string;
}

export const DEFAULT_DEVICE_PATHS: Readonly<DevicePaths> = Object.freeze({
  storagePath: "/var/sota",
  resetAppsRoot: "/var/sota/reset-apps",
  composeAppsRoot: "/var/sota/compose-apps",
});

/** Config drop-ins shipped with the image; preload writes {@link PRELOAD_CONF_FILE} here. */
export const SYSTEM_CONF_DIR = "/usr/lib/sota/conf.d";
/** Config drop-ins of the device's owner (read after {@link SYSTEM_CONF_DIR}, so they win). */
export const LOCAL_CONF_DIR = "/etc/sota/conf.d";
/** preload's config defaults: the apps baked in and where the store is. */
export const PRELOAD_CONF_FILE = "50-preload.toml";
/** The apps early start runs before registration (one per line or comma-separated). */
export const DEFAULT_APPS_FILE = "/var/lmp/default-apps";

/** The target preload baked in: `<storage path>/preload/target.json`. */
export const preloadedTargetPath = (storagePath: string): string => join(storagePath, "preload", "target.json");

/** The trusted TUF root: `<storage path>/tuf/root.json`. */
export const trustedRootPath = (storagePath: string): string => join(storagePath, "tuf", "root.json");

/**
 * A device path under a prefix (FIOUP_ROOT, or the tree preload fills).
 *
 * @example
 * ```ts
 * underRoot("/tmp/dev1", "/var/sota"); // "/tmp/dev1/var/sota"
 * underRoot("", "/var/sota"); // "/var/sota"
 * ```
 */
export const underRoot = (root: string, devicePath: string): string => join(root || "/", devicePath.replace(/^\/+/, ""));

/**
 * Where a device path from a config file is on this host: absolute paths are
 * device paths, so they go under `root` (FIOUP_ROOT) unless a config written by
 * an older fioup already holds the host path.
 *
 * @example
 * ```ts
 * hostPath("/tmp/dev1", "/var/sota"); // "/tmp/dev1/var/sota"
 * hostPath("/tmp/dev1", "/tmp/dev1/var/sota"); // unchanged
 * ```
 */
export function hostPath(root: string, p: string): string {
  if (!root || !isAbsolute(p) || p === root || p.startsWith(root.replace(/\/$/, "") + "/")) return p;
  return join(root, p);
}

/**
 * The device path of a host path: what config files store, so a device
 * directory can be moved or copied. The inverse of {@link hostPath}.
 *
 * @example
 * ```ts
 * devicePath("/tmp/dev1", "/tmp/dev1/var/sota"); // "/var/sota"
 * devicePath("", "/var/sota"); // "/var/sota"
 * ```
 */
export function devicePath(root: string, p: string): string {
  const r = root.replace(/\/+$/, "");
  if (!r || !isAbsolute(p)) return p;
  if (p === r) return "/";
  return p.startsWith(r + "/") ? p.slice(r.length) : p;
}
