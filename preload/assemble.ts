/**
 * Assembles the root filesystem tree of a preloaded image: the apps' blobs in
 * the device store layout (lib/device), the preloaded target (so fioup treats it as current and
 * its first update fetches only what changed), the TUF root, fioup config
 * defaults with the app shortlist, and the early-start service.
 *
 * Blobs come through a cache store reused across runs; every cached blob is
 * re-hashed before it goes into an image, so a corrupt cache fails the build
 * instead of shipping.
 *
 * @module
 */
import { constants } from "node:fs";
import { chmod, copyFile, link, mkdir, rm, symlink, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import type { Target } from "../lib/api/index.ts";
import { digestBytes, digestFile } from "../lib/oci/digest.ts";
import { retrySayer } from "../lib/oci/blob-store.ts";
import type { RegistryClient } from "../lib/oci/registry-client.ts";
import { DEFAULT_DEVICE_PATHS, PRELOAD_CONF_FILE, preloadedTargetPath, SYSTEM_CONF_DIR, trustedRootPath, type DevicePaths } from "../lib/device/paths.ts";
import { writePreloadedTarget } from "../lib/device/preloaded-target.ts";
import { resolveApps } from "../lib/device/resolve.ts";
import { DeviceBlobStore } from "../lib/device/store.ts";
import { DEFAULT_EARLY_START_PATHS, earlyStartScript, earlyStartUnit, UNIT_NAME, type EarlyStartPaths } from "./early-start/unit.ts";
import { DAEMON_UNIT, DAEMON_UNIT_TEXT } from "../lib/device/daemon-unit.ts";
import { sizeText } from "../lib/cli/bytes.ts";
import { checkRoom } from "./output.ts";

export class AssembleError extends Error {
  override name = "AssembleError";
}

export class CorruptCacheError extends Error {
  override name = "CorruptCacheError";
}

export interface AssembleOptions {
  target: Target;
  /** Apps to preload; undefined = all apps of the target. */
  apps: string[] | undefined;
  /** Trusted root.json text, baked in as the device's trust anchor. */
  rootJson: string;
  registry(host: string): RegistryClient;
  /** The tree to fill (may already hold a base rootfs). */
  tree: string;
  cacheDir: string;
  paths?: DevicePaths;
  platform?: { os: string; architecture: string; variant?: string };
  /** A fioup binary to install as /usr/bin/fioup. */
  fioupBinary?: string;
  /**
   * Hard-link cached blobs into the tree instead of copying them (default true).
   * Only safe when the tree is throwaway (tar, ext4) or the cache is: a linked
   * image shares its blob files with the cache.
   */
  linkFromCache?: boolean;
  /**
   * Asked once the blobs to place are known, before any is fetched, with their sizes and the bytes
   * to download: a caller that can tell they will not fit (where the cache is, where the image
   * goes, an ext4 --size) refuses there, not after the download. Without it, the cache's room is checked.
   */
  beforeFetch?: (blobSizes: number[], toFetch: number) => Promise<void>;
  /** Lines that stay: each step, each blob placed. */
  onProgress?: (line: string) => void;
  /** The fetch's state while blobs download (bytes so far of the bytes to fetch): shown in place, often. */
  onFetching?: (line: string) => void;
}

export interface AssembleResult {
  target: string;
  apps: string[];
  blobs: number;
  bytes: number;
  /** Bytes downloaded in this run (0 with a warm cache). */
  fetched: number;
  /** Bytes of blobs this run completed that an interrupted earlier run had fetched (resumed, not fetched again). */
  resumed: number;
}

/** Blobs fetched and placed at once. */
const PARALLEL_BLOBS = 4;

/** The cache as resolve reads it: a cached manifest is checked before it is parsed and trusted. */
class CheckedCache extends DeviceBlobStore {
  /** Blobs downloaded in this run, by resolve or by the blob loop: the progress says "fetched", not "cached". */
  readonly fetchedNow = new Set<string>();

  override putBytes(digest: string, bytes: Uint8Array): void {
    if (!this.has(digest)) this.fetchedNow.add(digest);
    super.putBytes(digest, bytes);
  }

  /** Bytes of each blob's partial an interrupted earlier run left, which this run's download resumed from (not fetched again). */
  readonly resumed = new Map<string, number>();

  override async pull(...args: Parameters<DeviceBlobStore["pull"]>): Promise<number> {
    const digest = args[2].digest;
    const partial = this.has(digest) ? 0 : this.partialSize(digest);
    const got = await super.pull(...args);
    if (got > 0 || partial > 0) this.fetchedNow.add(digest);
    // A registry that ignores Range sends the blob whole: then nothing was resumed.
    const resumed = Math.max(0, Math.min(partial, args[2].size - got));
    if (resumed > 0) this.resumed.set(digest, resumed);
    return got;
  }

  override async readBytes(digest: string): Promise<Uint8Array> {
    const bytes = await super.readBytes(digest);
    const actual = digestBytes(bytes);
    if (actual !== digest) throw new CorruptCacheError(`Cached blob ${digest} is corrupt (its bytes hash to ${actual}): remove it from ${this.root} and retry`);
    return bytes;
  }
}

/** What a blob line says of a download resumed from an earlier run's partial. */
const resumedNote = (bytes: number | undefined) => (bytes ? ` (${sizeText(bytes)} of it resumed from an earlier run)` : "");

const inTree = (tree: string, abs: string) => join(tree, abs.replace(/^\/+/, ""));

async function placeBlob(from: string, to: string, linkIt: boolean): Promise<void> {
  await mkdir(dirname(to), { recursive: true });
  if (linkIt) {
    try {
      return await link(from, to);
    } catch {
      // another filesystem, or a base tree that already holds it: copy
    }
  }
  await rm(to, { force: true });
  await copyFile(from, to, constants.COPYFILE_FICLONE);
}

/**
 * Fills `tree` with everything a preloaded device needs.
 *
 * @throws {AssembleError} No app to preload, or an app asked for that the target does not have.
 * @throws {CorruptCacheError} A cached blob whose bytes do not match its digest.
 */
export async function assemble(o: AssembleOptions): Promise<AssembleResult> {
  const paths = o.paths ?? DEFAULT_DEVICE_PATHS;
  const say = o.onProgress ?? (() => {});
  const all = o.target.entry.custom.docker_compose_apps;
  const names = o.apps ?? Object.keys(all).sort();
  // An image with no app would be written with `compose_apps = ""`: every device would run nothing.
  if (!names.length) throw new AssembleError(o.apps ? "The list of apps to preload is empty" : `Target ${o.target.name} has no app to preload`);
  const missing = names.filter((n) => !(n in all));
  if (missing.length) {
    throw new AssembleError(
      `Target ${o.target.name} has no app ${missing.map((m) => `"${m}"`).join(", ")} (it has: ${Object.keys(all).sort().join(", ") || "none"})`,
    );
  }
  const cache = new CheckedCache(o.cacheDir);
  say(`resolving ${names.length} app(s) of ${o.target.name}: ${names.join(", ")}`);
  const plan = await resolveApps(
    names.map((name) => ({ name, uri: all[name]!.uri })),
    { registry: o.registry, store: cache, platform: o.platform },
  );
  const toFetch = plan.blobs.filter((b) => !cache.has(b.digest)).reduce((n, b) => n + b.size, 0);
  if (o.beforeFetch) await o.beforeFetch(plan.blobs.map((b) => b.size), toFetch);
  else await checkRoom([{ dir: o.cacheDir, bytes: toFetch, what: "the blobs to fetch" }]);
  let fetched = plan.resolveBytes;
  let bytes = 0;
  let done = 0;
  // Bytes of each blob downloading or downloaded (a resumed partial included), summed for the
  // line a multi-GB layer keeps moving for minutes before it is placed.
  const got = new Map<string, number>();
  const fetching = (digest: string, n: number) => {
    got.set(digest, n);
    let sum = 0;
    for (const v of got.values()) sum += v;
    o.onFetching?.(`fetching blobs: ${sizeText(sum)} of ${sizeText(toFetch)}, ${done} of ${plan.blobs.length} placed`);
  };
  const store = new DeviceBlobStore(inTree(o.tree, paths.resetAppsRoot));
  const one = async (b: (typeof plan.blobs)[number]) => {
    // The first retry is said, then at most one line in 10 s (the same line as fioup's).
    const onRetry = retrySayer(b, say);
    const pulled = await cache.pull(o.registry(b.registry), b.repo, b, { signal: stop.signal, onProgress: (n) => fetching(b.digest, n), onRetry });
    fetched += pulled;
    const src = cache.path(b.digest);
    // pull() hashed what it just downloaded; a blob that was already cached is hashed here.
    if (!pulled) {
      const { digest } = await digestFile(src);
      if (digest !== b.digest) throw new CorruptCacheError(`Cached blob ${b.digest} is corrupt (its bytes hash to ${digest}): remove it from ${o.cacheDir} and retry`);
    }
    await placeBlob(src, store.path(b.digest), o.linkFromCache ?? true);
    bytes += b.size;
    say(`[${++done}/${plan.blobs.length}] ${b.kind} ${b.digest.slice(7, 19)} ${sizeText(b.size)}${cache.fetchedNow.has(b.digest) ? " fetched" : " cached"}${resumedNote(cache.resumed.get(b.digest))}`);
  };
  // A few blobs at a time, as docker and skopeo do: one stream rarely fills the link.
  const queue = [...plan.blobs];
  // The first failure ends the run: no more blobs are taken, and the downloads under way stop
  // instead of retrying (a full disk would otherwise keep them at it for a minute after the error).
  const stop = new AbortController();
  await Promise.all(
    Array.from({ length: Math.min(PARALLEL_BLOBS, queue.length) }, async () => {
      try {
        for (let b = queue.shift(); b; b = queue.shift()) await one(b);
      } catch (e) {
        queue.length = 0;
        stop.abort(e);
        throw e;
      }
    }),
  );

  await writePreloadedTarget(inTree(o.tree, preloadedTargetPath(paths.storagePath)), { name: o.target.name, entry: o.target.entry, apps: names });
  const root = inTree(o.tree, trustedRootPath(paths.storagePath));
  await mkdir(dirname(root), { recursive: true });
  await writeFile(root, o.rootJson);

  const confD = inTree(o.tree, SYSTEM_CONF_DIR);
  await mkdir(confD, { recursive: true });
  const toml = [
    "# Written by preload: the apps baked into this image and where fioup keeps them.",
    "[pacman]",
    `compose_apps = ${JSON.stringify(names.join(","))}`,
    `compose_apps_root = ${JSON.stringify(paths.composeAppsRoot)}`,
    `reset_apps_root = ${JSON.stringify(paths.resetAppsRoot)}`,
    "",
    "[storage]",
    `path = ${JSON.stringify(paths.storagePath)}`,
    "",
  ].join("\n");
  await writeFile(join(confD, PRELOAD_CONF_FILE), toml);

  const esPaths: EarlyStartPaths = { ...DEFAULT_EARLY_START_PATHS, storagePath: paths.storagePath };
  const unitDir = inTree(o.tree, "/etc/systemd/system");
  await mkdir(join(unitDir, "multi-user.target.wants"), { recursive: true });
  await writeFile(join(unitDir, UNIT_NAME), earlyStartUnit(esPaths));
  const enable = (unit: string) => {
    const wants = join(unitDir, "multi-user.target.wants", unit);
    return symlink(relative(dirname(wants), join(unitDir, unit)), wants).catch((e) => {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    });
  };
  await enable(UNIT_NAME);
  const script = inTree(o.tree, esPaths.scriptPath);
  await mkdir(dirname(script), { recursive: true });
  await writeFile(script, earlyStartScript(esPaths));
  await chmod(script, 0o755);
  if (o.fioupBinary) {
    const bin = inTree(o.tree, "/usr/bin/fioup");
    await copyFile(o.fioupBinary, bin);
    await chmod(bin, 0o755);
    // The daemon with its binary: systemd skips it until registration, which starts it (docs/preload.md).
    await writeFile(join(unitDir, DAEMON_UNIT), DAEMON_UNIT_TEXT);
    await enable(DAEMON_UNIT);
  }
  return { target: o.target.name, apps: names, blobs: plan.blobs.length, bytes, fetched, resumed: [...cache.resumed.values()].reduce((n, r) => n + r, 0) };
}
