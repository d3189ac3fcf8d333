/**
 * Garbage collection for the embedded registry (`gateway registry gc`): removes stored blobs
 * that no manifest of any repository references, the repository links to them, and stale
 * upload sessions. With `untargeted` (`--untargeted`) it first drops the manifests no current
 * target reaches (untargeted.ts says which), so the sweep frees what only they referenced.
 * Recently written blobs and manifests are spared (`graceMs`), so a push in progress, whose
 * layers arrive before its manifest, is not collected under it.
 *
 * gc runs as its own process while the gateway serves, so a manifest may be put between its mark
 * and its sweep (a publish reusing one gc has just removed): marked too late, its content would be
 * swept, and the manifest left in place without it. A put therefore makes fresh every blob the
 * manifest references, its own content included (storage.ts putManifest: it checks them anyway),
 * and the sweep reads a blob's mtime just before taking it, sparing any changed since gc started;
 * it takes a blob by moving it aside and reading the mtime again, so a put that came in between
 * shows and the blob is put back, and one that comes later finds it gone: refused for a blob it
 * references (MANIFEST_BLOB_UNKNOWN: publish fails and says so, no manifest is left without its
 * content), its own content written again. A manifest no target reaches is removed the same way
 * (takeManifest): its link moved aside first, then its tags and referrer entry unless written since
 * gc started, and a put of it meanwhile writes a new link, which stays. A put never waits for gc,
 * and costs a utimes per blob, on the push path only. Blobs a publish pushes are fresh files,
 * spared by the grace period; one it found already there and did not push, swept before its
 * manifest is put, gets that manifest refused the same way. A bundle index, which a manifest
 * names only in an annotation and a put does not require, is refused missing only while a gc
 * runs: gc holds `.gc.lock` (storage.gcLockPath) for its whole run, which also refuses a second
 * gc at once on the same host (GcRunningError). The repositories' links to what the sweep took go
 * last, each unless its blob was stored again meanwhile (dropLinks: a publish that found it gone
 * uploads it again).
 *
 * It deletes only from a directory laid out as this registry's storage (storage.ts): pointed at
 * anything else by mistake, it refuses rather than delete files it cannot know are unreferenced.
 *
 * @module
 */
import type { Stats } from "node:fs";
import { link, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { acquireLock, LockedError, type Lock } from "../../lib/fs/pid-lock.ts";
import { asideOf, asidePath, isNotFound, listDir, readTextOrUndefined } from "./_fs.ts";
import { REGISTRY_TOP_FOLDERS, RegistryStorage, STORAGE_ID_FILE, type ManifestLink } from "./storage.ts";
import { reachedManifests, revisionKey, type TargetApp } from "./untargeted.ts";
import { referencedBlobs } from "./manifest.ts";
import { namedFew } from "../../lib/cli/few.ts";

/** `root` is not this registry's storage: nothing was removed. */
export class NotRegistryStorageError extends Error {
  override name = "NotRegistryStorageError";
  constructor(root: string, why: string) {
    super(`${root} is not the gateway registry's storage (${why}): nothing removed`);
  }
}

const HEX64 = /^[a-f0-9]{64}$/;
const UPLOAD_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Checks that `root` is laid out as storage.ts lays it out: nothing at its top but the
 * registry's own folders and its id file (dot files and a volume's lost+found aside), blobs under blobs/sha256
 * named by their digest, beside repositories/ (created with the first push). An empty folder,
 * or a missing or empty blobs/sha256, is an empty registry. Returns the blob names it listed,
 * for the sweep.
 */
async function checkLayout(storage: RegistryStorage): Promise<string[]> {
  const { root } = storage;
  const st = await stat(root).catch((e) => (isNotFound(e) ? undefined : Promise.reject(e)));
  if (!st) throw new NotRegistryStorageError(root, "no such directory");
  if (!st.isDirectory()) throw new NotRegistryStorageError(root, "not a directory");
  const strangers = (await listDir(root)).filter((e) => !REGISTRY_TOP_FOLDERS.includes(e) && e !== STORAGE_ID_FILE && !e.startsWith(".") && e !== "lost+found").sort();
  if (strangers.length) {
    const shown = namedFew(strangers, 3);
    throw new NotRegistryStorageError(root, `it holds ${shown}, which the registry does not make: only ${REGISTRY_TOP_FOLDERS.join("/, ")}/`);
  }
  const blobs = await listDir(storage.blobsDir);
  if (!blobs.length) return blobs;
  if (!(await stat(storage.repositoriesDir).catch(() => undefined))?.isDirectory())
    throw new NotRegistryStorageError(root, "it has blobs/sha256 but no repositories/");
  const stranger = blobs.find((b) => !HEX64.test(b) && !b.startsWith("."));
  if (stranger !== undefined) throw new NotRegistryStorageError(root, `blobs/sha256/${stranger} is not named by a sha256 digest`);
  return blobs;
}

export interface GcOptions {
  /** Blobs and upload sessions younger than this are kept; default 1 hour. */
  graceMs?: number;
  /** Upload sessions untouched for this long are removed; default 24 hours. */
  uploadMaxAgeMs?: number;
  /** Report what would be removed without removing it. */
  dryRun?: boolean;
  /**
   * The apps of every current target: manifests none of them reaches (and older than the grace
   * period) are removed too, with their tags. Without it no manifest is removed.
   */
  untargeted?: TargetApp[];
}

export interface GcResult {
  /** Manifest revisions removed (only with `untargeted`). */
  manifestsRemoved: number;
  blobsRemoved: number;
  bytesFreed: number;
  uploadsRemoved: number;
  blobsKept: number;
}

/**
 * Removes the file at `path` unless a write since gc judged it calls that off: the file is first
 * moved aside (asidePath), so a write that comes later makes a new one and is not undone, and
 * `keep` is asked with the moved file's stat, read after the move, so a write that came earlier
 * (a touch, or the file replaced) shows. Kept, it goes back unless a newer file took its place.
 * False if it stays.
 */
async function takeAside(path: string, keep: (st: Stats) => boolean | Promise<boolean>): Promise<boolean> {
  const aside = asidePath(path);
  try {
    await rename(path, aside);
  } catch (e) {
    if (isNotFound(e)) return false;
    throw e;
  }
  const st = await stat(aside).catch((e) => (isNotFound(e) ? undefined : Promise.reject(e)));
  if (!st) return false; // put back by another gc starting
  if (await keep(st)) {
    await putBack(aside, path);
    return false;
  }
  await rm(aside, { force: true });
  return true;
}

/**
 * Puts a file gc moved aside back, unless a newer one has taken its place since: that one stays.
 * On a filesystem without hard links (some FUSE and SMB mounts) it is renamed back when its place
 * is free, which a write landing in between would lose to (it wrote the same content, or a newer
 * tag gc would then have kept).
 */
async function putBack(aside: string, path: string): Promise<void> {
  try {
    await link(aside, path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EPERM" || code === "ENOTSUP" || code === "EOPNOTSUPP" || code === "ENOSYS") {
      if (!(await exists(path))) await rename(aside, path).catch((e) => (isNotFound(e) ? undefined : Promise.reject(e)));
    } else if (code !== "EEXIST" && !isNotFound(e)) throw e;
  }
  await rm(aside, { force: true });
}

const exists = (path: string) => stat(path).then(
  () => true,
  (e) => (isNotFound(e) ? false : Promise.reject(e)),
);

/**
 * Removes the blob at `path`, last modified at `mtimeMs` when the sweep judged it, unless a
 * manifest put has refreshed it since (storage.ts putManifest touches every blob it references).
 * A put that comes while it is aside finds it gone and is refused (MANIFEST_BLOB_UNKNOWN).
 * False if it stays.
 */
export function takeBlob(path: string, mtimeMs: number): Promise<boolean> {
  return takeAside(path, (st) => st.mtimeMs !== mtimeMs);
}

/**
 * Drops `repo`'s links to the blobs the sweep took (`removed`, by hex). A publish may have found
 * one gone meanwhile (HEAD 404) and uploaded it again, storing and linking it anew (storage.ts
 * commitBlobFile, linkBlob): that link must stay, or the repository never serves the blob again
 * though the manifest referencing it is stored (later gcs keep the blob, but no link comes back).
 * So each link goes aside first and is removed only if its blob is still not stored, looked at
 * after the move: a re-link written before the move goes back, one written after is a new file.
 */
export async function dropLinks(storage: RegistryStorage, repo: string, removed: ReadonlySet<string>): Promise<void> {
  const layers = storage.layersDir(repo);
  for (const hex of await listDir(layers)) if (removed.has(hex)) await takeAside(join(layers, hex), () => exists(join(storage.blobsDir, hex)));
}

/** What a stopped gc's dropLinks had moved aside in `repo` goes back if its blob is stored (put back, or uploaded again); else it goes. */
async function putBackLinks(storage: RegistryStorage, repo: string): Promise<void> {
  const layers = storage.layersDir(repo);
  for (const name of await listDir(layers)) {
    const hex = asideOf(name);
    if (!hex || !HEX64.test(hex)) continue;
    if (await exists(join(storage.blobsDir, hex))) await putBack(join(layers, name), join(layers, hex));
    else await rm(join(layers, name), { force: true });
  }
}

/**
 * Removes a manifest no target reaches from `repo`: its link, last modified at `mtimeMs` when gc
 * judged it, then its tags and its referrer entry, each unless written since gc started at
 * `since` (a publish putting it again: it stays, under the tags that put wrote). A put that comes
 * once the link is aside writes a new link, and the manifest stays. False if it stays.
 */
async function takeManifest(storage: RegistryStorage, repo: string, hex: string, mtimeMs: number, since: number): Promise<boolean> {
  const linkPath = join(storage.revisionsDir(repo), hex);
  const text = await readTextOrUndefined(linkPath);
  if (text === undefined || !(await takeAside(linkPath, (st) => st.mtimeMs !== mtimeMs))) return false;
  await pause("gc-pause-in-delete", `with ${repo}@sha256:${hex} half removed`);
  const written = (st: Stats) => st.mtimeMs >= since;
  for (const tag of await listDir(storage.tagsDir(repo))) {
    if (tag.startsWith(".")) continue;
    const file = storage.tagFile(repo, tag);
    if ((await readTextOrUndefined(file))?.trim() === `sha256:${hex}`) await takeAside(file, written);
  }
  const { subject } = JSON.parse(text) as ManifestLink;
  if (subject) await takeAside(join(storage.referrersDir(repo, subject), hex), written);
  return !(await exists(linkPath));
}

/**
 * What a stopped gc's takeManifest had moved aside in `repo` goes back: links (the manifest is
 * judged again), then tags and referrer entries whose manifest is still linked; those of a
 * manifest it had already removed are removed too.
 */
async function putBackManifests(storage: RegistryStorage, repo: string): Promise<void> {
  const revisions = storage.revisionsDir(repo);
  for (const name of await listDir(revisions)) {
    const hex = asideOf(name);
    if (hex) await putBack(join(revisions, name), join(revisions, hex));
  }
  const linked = async (digest: string | undefined) => digest !== undefined && /^sha256:[a-f0-9]{64}$/.test(digest) && (await exists(join(revisions, digest.slice(7))));
  const back = async (dir: string, name: string, digest: string | undefined) => {
    if (await linked(digest)) await putBack(join(dir, name), join(dir, asideOf(name)!));
    else await rm(join(dir, name), { force: true });
  };
  const tags = storage.tagsDir(repo);
  for (const name of await listDir(tags)) if (asideOf(name)) await back(tags, name, (await readTextOrUndefined(join(tags, name)))?.trim());
  const subjects = storage.referrersRoot(repo);
  for (const subject of await listDir(subjects))
    for (const name of await listDir(join(subjects, subject))) {
      const hex = asideOf(name);
      if (hex) await back(join(subjects, subject), name, `sha256:${hex}`);
    }
}

/**
 * For tests only: `GATEWAY_FAULT=gc-pause-before-sweep` stops gc between its mark and its sweep,
 * `gc-pause-in-delete` with the first manifest it removes half removed (its link aside, its tags
 * not yet); it says so on stderr and waits until its stdin is closed, so a test can put a manifest
 * in that window. Read once; nothing happens unless it is set.
 */
const FAULT = process.env.GATEWAY_FAULT;
async function pause(point: "gc-pause-before-sweep" | "gc-pause-in-delete", where: string): Promise<void> {
  if (FAULT !== point) return;
  process.stderr.write(`gc: paused ${where} (GATEWAY_FAULT=${point}): closing stdin resumes it\n`);
  await Bun.stdin.text();
}

/** Every repository directory under `<root>/repositories` (names nest). */
async function repositories(storage: RegistryStorage): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, name: string): Promise<void> => {
    const entries = await listDir(dir);
    if (name && (entries.includes("_manifests") || entries.includes("_layers"))) out.push(name);
    for (const e of entries) {
      if (e.startsWith("_") || e.startsWith(".")) continue;
      const sub = join(dir, e);
      if ((await stat(sub).catch(() => undefined))?.isDirectory()) await walk(sub, name ? `${name}/${e}` : e);
    }
  };
  await walk(storage.repositoriesDir, "");
  return out;
}

/**
 * Mark and sweep over `root`.
 *
 * @throws {NotRegistryStorageError} If `root` is not laid out as this registry's storage.
 * @example
 * ```ts
 * const { blobsRemoved, bytesFreed } = await gc(`${dataDir}/registry`);
 * ```
 */
export async function gc(root: string, opts: GcOptions = {}): Promise<GcResult> {
  const now = Date.now();
  // Listed before the mark: a blob that lands later is not swept this time at all.
  const storage = new RegistryStorage(root);
  const blobs = await checkLayout(storage);
  if (opts.dryRun) return await collect(storage, blobs, now, opts);
  // Held for the whole run (storage.gcRunning): a put then refuses a bundle index it finds missing.
  let lock: Lock;
  try {
    lock = acquireLock(storage.gcLockPath);
  } catch (e) {
    if (e instanceof LockedError) throw new GcRunningError(root, e.pid);
    throw e;
  }
  try {
    return await collect(storage, blobs, now, opts);
  } finally {
    lock.release();
  }
}

/** Another gc runs on the same storage: this one removed nothing. */
export class GcRunningError extends Error {
  override name = "GcRunningError";
  constructor(root: string, pid: number) {
    super(`Another registry gc (process ${pid}) is running on ${root}: nothing removed; run it again once that one ends`);
  }
}

/** gc's mark and sweep, `blobs` listed by checkLayout, `now` when gc started. */
async function collect(storage: RegistryStorage, blobs: string[], now: number, opts: GcOptions): Promise<GcResult> {
  const grace = opts.graceMs ?? 3_600_000;
  const uploadMaxAge = opts.uploadMaxAgeMs ?? 86_400_000;
  const blobDir = storage.blobsDir;
  // A blob a gc stopped had moved aside (takeBlob) goes back: a put may have refreshed it just before; this sweep judges it again.
  // One re-uploaded since keeps its place (putBack). The same for a manifest's link and tags: that manifest is judged again;
  // and for a repository's link to a blob, back if the blob is (putBackLinks).
  for (const name of blobs) {
    const hex = asideOf(name);
    if (!hex || !HEX64.test(hex)) continue;
    if (!opts.dryRun) await putBack(join(blobDir, name), join(blobDir, hex));
    if (!blobs.includes(hex)) blobs.push(hex);
  }
  const marked = new Set<string>();
  const repos = await repositories(storage);
  if (!opts.dryRun)
    for (const repo of repos) {
      await putBackManifests(storage, repo);
      await putBackLinks(storage, repo);
    }

  // Manifests no target reaches: known in full before anything is removed (the walk fails closed).
  const doomed: { repo: string; hex: string; mtimeMs: number }[] = [];
  if (opts.untargeted) {
    // Targets name apps, yet this storage holds no repository at all: it is not the registry they were pushed to.
    if (opts.untargeted.length && !repos.length) {
      const a = opts.untargeted[0]!;
      throw new NotRegistryStorageError(
        storage.root,
        `it holds no repository, yet the current targets name ${opts.untargeted.length} apps, target ${a.target} app ${a.app} (${a.uri}) the first: ` +
          "check that gc looks at the registry gateway serve serves (give gc serve's --registry-dir)",
      );
    }
    const kept = await reachedManifests(storage, repos, opts.untargeted, grace, now);
    for (const repo of repos)
      for (const hex of await listDir(storage.revisionsDir(repo))) {
        if (!HEX64.test(hex) || kept.has(revisionKey(repo, hex))) continue;
        // Pushed since the walk listed the repository: not walked, so spared like any fresh one.
        const st = await stat(join(storage.revisionsDir(repo), hex)).catch(() => undefined);
        if (st && now - st.mtimeMs >= grace) doomed.push({ repo, hex, mtimeMs: st.mtimeMs });
      }
  }

  // The manifests go before the blobs: stopped between the two, no manifest is left without its content.
  // One put again since it was judged (a publish reusing it, gateway/publish/transfer.ts) stays, and is marked below.
  const gone = new Set<string>();
  for (const { repo, hex, mtimeMs } of doomed) {
    if (!opts.dryRun && !(await takeManifest(storage, repo, hex, mtimeMs, now))) continue;
    gone.add(revisionKey(repo, hex));
  }

  // Mark: every manifest revision that stays and what it references.
  for (const repo of repos) {
    const revDir = storage.revisionsDir(repo);
    for (const hex of await listDir(revDir)) {
      if (!HEX64.test(hex) || gone.has(revisionKey(repo, hex))) continue;
      marked.add(hex);
      let doc: Record<string, unknown>;
      try {
        doc = JSON.parse(await readFile(join(blobDir, hex), "utf8"));
      } catch {
        continue;
      }
      for (const digest of referencedBlobs(doc)) marked.add(digest.slice(7));
    }
  }

  await pause("gc-pause-before-sweep", "before the sweep");

  // Sweep the content store.
  const result: GcResult = { manifestsRemoved: gone.size, blobsRemoved: 0, bytesFreed: 0, uploadsRemoved: 0, blobsKept: 0 };
  const removed = new Set<string>();
  for (const hex of blobs) {
    if (!HEX64.test(hex)) continue;
    if (marked.has(hex)) {
      result.blobsKept++;
      continue;
    }
    const st = await stat(join(blobDir, hex)).catch(() => undefined);
    if (!st?.isFile()) continue;
    if (now - st.mtimeMs < grace || (!opts.dryRun && !(await takeBlob(join(blobDir, hex), st.mtimeMs)))) {
      result.blobsKept++;
      continue;
    }
    removed.add(hex);
    result.blobsRemoved++;
    result.bytesFreed += st.size;
  }

  // Drop repository links to what is gone.
  if (!opts.dryRun) for (const repo of repos) await dropLinks(storage, repo, removed);

  // Stale upload sessions.
  const uploadsDir = storage.uploadsDir;
  for (const id of await listDir(uploadsDir)) {
    if (!UPLOAD_ID.test(id)) continue; // uploads.ts names sessions by randomUUID(): anything else is not one
    const data = await stat(join(uploadsDir, id, "data")).catch(() => undefined);
    const info = await readTextOrUndefined(join(uploadsDir, id, "info.json"));
    const age = now - (data?.mtimeMs ?? 0);
    if (info !== undefined && age < uploadMaxAge) continue;
    if (info === undefined && age < grace) continue; // being created right now
    result.uploadsRemoved++;
    if (!opts.dryRun) await rm(join(uploadsDir, id), { recursive: true, force: true });
  }
  return result;
}
