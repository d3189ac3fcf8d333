/**
 * The TUF metadata of an offline bundle as the device's TUF client reads it: a fetch function
 * for lib/tuf's verifier that answers `<base>/<file>` from the bundle's tuf/ directory (404 for
 * a file it lacks, which tells the client "no newer root", as the gateway's 404 does). The
 * client then runs the whole TUF workflow on these bytes against the device's trusted root.
 *
 * @module
 */
import { join } from "node:path";
import type { FetchLike } from "../tuf/fetcher.ts";
import { BUNDLE_TUF_DIR, BUNDLE_TUF_FILE } from "./format.ts";

/** The metadata base URL to give the verifier together with {@link bundleMetadataFetch}. */
export const BUNDLE_METADATA_BASE_URL = "http://offline-bundle.invalid/repo/";

/**
 * A fetch that serves a bundle's tuf/ files and nothing else.
 *
 * @example
 * ```ts
 * await verifyAndLoadTargets({ metadataDir, metadataBaseUrl: BUNDLE_METADATA_BASE_URL, fetch: bundleMetadataFetch(dir) });
 * ```
 */
export function bundleMetadataFetch(dir: string): FetchLike {
  return async (url) => {
    const name = new URL(url).pathname.split("/").pop() ?? "";
    const file = Bun.file(join(dir, BUNDLE_TUF_DIR, name));
    if (!BUNDLE_TUF_FILE.test(name) || !(await file.exists())) return new Response("not in the bundle", { status: 404 });
    return new Response(file.stream(), { headers: { "content-type": "application/json", "content-length": String(file.size) } });
  };
}
