/**
 * fioup's runtime: the Docker Engine, `docker compose` and app files on the
 * device. Callers use {@link Runtime}; the rest is exported for tests, tools
 * and the exit-code table (error classes).
 *
 * @example
 * ```ts
 * const rt = new Runtime({ composeAppsRoot: "/var/sota/compose-apps", storeRoot: "/var/sota/reset-apps" });
 * await rt.installApp({ name: "httpd", uri: "hub.example:443/main/httpd@sha256:..." });
 * const [r] = await rt.startApps(["httpd"], { timeoutMs: 60_000 });
 * if (!r?.ok) console.error(r?.error);
 * ```
 * @module
 */
export * from "./runtime.ts";
export { BlobNotInStoreError, CorruptBlobError } from "./_store.ts";
export { DockerEngine, EngineError, socketPathFromHost } from "./docker-engine.ts";
export {
  hostPlatform,
  ImageIdMismatchError,
  ImageLoadError,
  loadImageFromStore,
  localTag,
  NoMatchingPlatformError,
  UnpinnedImageError,
  type Platform,
} from "./images.ts";
export { Compose, ComposeError, ComposeNotFoundError, findCompose, OVERRIDE_FILE, projectName } from "./compose.ts";
export { appState, serviceReports, waitForApp, type ServiceReport, type WaitOptions } from "./health.ts";
export { BundleIndexMismatchError, InvalidComposeBundleError, UnsafeBundleError } from "../../lib/compose/extract.ts";
