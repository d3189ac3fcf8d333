/**
 * Where things live on a device: the defaults fioup falls back to and preload
 * bakes into an image. A device directory can sit under a prefix (FIOUP_ROOT in
 * tests, the image tree in preload); these are the paths as the device sees them.
 *
 * @module
 */
import { join } from "node:path";

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
