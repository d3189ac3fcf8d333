/**
 * The registry's filesystem store. Blobs are content-addressed and shared; each repository
 * holds links, so a repository serves only blobs pushed or mounted into it, and only
 * manifests pushed to it:
 *
 * ```
 * <root>/blobs/sha256/<hex>                                   content (blobs and manifests)
 * <root>/repositories/<name>/_layers/sha256/<hex>             link: blob is in this repo
 * <root>/repositories/<name>/_manifests/revisions/sha256/<hex> link: JSON ManifestLink
 * <root>/repositories/<name>/_manifests/tags/<tag>            "sha256:<hex>"
 * <root>/repositories/<name>/_referrers/sha256/<subject hex>/<manifest hex>
 * <root>/uploads/<uuid>/{info.json,data}                      upload sessions (uploads.ts)
 * <root>/deltas/...                                           layer deltas made on demand (deltas.ts)
 * <root>/tmp/                                                 scratch for writes that end in a rename
 * <root>/gateway-registry-id                                  which storage this is, for replicas (setting.ts)
 * ```
 *
 * The top-level folders are named once, here (`TOP`): gc refuses a root holding anything else
 * (but STORAGE_ID_FILE).
 *
 * Name components never start with `_`, so the link folders cannot clash with a nested
 * repository name. Every write that makes something visible is a rename.
 *
 * @module
 */
import { mkdir, rename, rm, stat, utimes } from "node:fs/promises";
import { join } from "node:path";
import { RegistryRequestError } from "./errors.ts";
import { checkDigest, isSha256Digest, isTag, looksLikeDigest } from "./_names.ts";
import { writeFileAtomic } from "../../lib/fs/atomic-write.ts";
import { lockHolder } from "../../lib/fs/pid-lock.ts";
import { asidePath, fileSize, isNotFound, listDir, readTextOrUndefined } from "./_fs.ts";
import { parseManifest, type ParsedManifest } from "./manifest.ts";

/** Largest manifest accepted (as distribution's default). */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** What a repository remembers about one of its manifests. */
export interface ManifestLink {
  mediaType: string;
  size: number;
  artifactType?: string;
  subject?: string;
  annotations?: Record<string, string>;
}

/** An OCI descriptor as returned in the referrers index. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  artifactType?: string;
  annotations?: Record<string, string>;
}

/** The folders at the top of a registry's root, each made by the module named. */
const TOP = {
  blobs: "blobs", // this file
  repositories: "repositories", // this file
  uploads: "uploads", // uploads.ts
  tmp: "tmp", // this file
  deltas: "deltas", // deltas.ts
} as const;

/** Every folder the registry makes at the top of its root (gc.ts refuses a root holding others). */
export const REGISTRY_TOP_FOLDERS: readonly string[] = Object.values(TOP);

/**
 * The one file at the top of a registry's root: an id the first replica on a PostgreSQL database
 * writes and records there, so a replica given another storage is refused (setting.ts). Not a dot
 * file: a backup with the registry keeps it.
 */
export const STORAGE_ID_FILE = "gateway-registry-id";

/** The top folders that hold only work in progress (upload sessions, writes before their rename): a backup leaves them out. */
export const REGISTRY_SCRATCH_FOLDERS: readonly string[] = [TOP.uploads, TOP.tmp];

export class RegistryStorage {
  constructor(readonly root: string) {}

  /** Where blobs live, each named by the hex of its sha256. */
  get blobsDir(): string {
    return join(this.root, TOP.blobs, "sha256");
  }
  blobPath(digest: string): string {
    return join(this.blobsDir, checkDigest(digest));
  }
  /** Every repository's folder is under this one (names nest). */
  get repositoriesDir(): string {
    return join(this.root, TOP.repositories);
  }
  repoDir(repo: string): string {
    return join(this.repositoriesDir, repo);
  }
  /** Upload sessions (uploads.ts). */
  get uploadsDir(): string {
    return join(this.root, TOP.uploads);
  }
  /** Layer deltas made on demand (deltas.ts). */
  get deltasDir(): string {
    return join(this.root, TOP.deltas);
  }
  /** The links of the blobs `repo` may serve, each named by its hex. */
  layersDir(repo: string): string {
    return join(this.repoDir(repo), "_layers", "sha256");
  }
  /** The links of the manifests pushed to `repo`, each named by its hex. */
  revisionsDir(repo: string): string {
    return join(this.repoDir(repo), "_manifests", "revisions", "sha256");
  }
  private layerLink(repo: string, digest: string): string {
    return join(this.layersDir(repo), checkDigest(digest));
  }
  private revisionLink(repo: string, digest: string): string {
    return join(this.revisionsDir(repo), checkDigest(digest));
  }
  /** The tag files of `repo`, each holding the digest it points at. */
  tagsDir(repo: string): string {
    return join(this.repoDir(repo), "_manifests", "tags");
  }
  tagFile(repo: string, tag: string): string {
    return join(this.tagsDir(repo), tag);
  }
  /** The referrer entries of `repo`, a folder per subject (by hex), an empty file per referrer (by hex). */
  referrersRoot(repo: string): string {
    return join(this.repoDir(repo), "_referrers", "sha256");
  }
  referrersDir(repo: string, subject: string): string {
    return join(this.referrersRoot(repo), checkDigest(subject));
  }
  /** Held by `gateway registry gc` while it runs (gc.ts); a dot file, which gc's layout check passes over. */
  get gcLockPath(): string {
    return join(this.root, ".gc.lock");
  }
  /** Whether a gc runs on this storage now (on this host: the lock names a live process here). */
  gcRunning(): boolean {
    return lockHolder(this.gcLockPath) !== undefined;
  }
  /** Scratch space on the same filesystem as blobs/, so commits are renames. */
  get tmpDir(): string {
    return join(this.root, TOP.tmp);
  }

  async repoExists(repo: string): Promise<boolean> {
    try {
      return (await stat(this.repoDir(repo))).isDirectory();
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  // ---- blobs ----

  /** Size of a blob visible in `repo`, or `undefined`. */
  async blobSize(repo: string, digest: string): Promise<number | undefined> {
    if ((await fileSize(this.layerLink(repo, digest))) === undefined) return undefined;
    return await fileSize(this.blobPath(digest));
  }

  /** Makes an already stored blob visible in `repo`. */
  async linkBlob(repo: string, digest: string): Promise<void> {
    if ((await fileSize(this.blobPath(digest))) === undefined) {
      throw new RegistryRequestError(404, "BLOB_UNKNOWN", `Cannot link blob "${digest}": it is not stored`);
    }
    await writeFileAtomic(this.layerLink(repo, digest), digest);
    await touch(this.blobPath(digest));
  }

  /** Removes a blob from `repo` (the content stays until gc). Returns false if it was not there. */
  async unlinkBlob(repo: string, digest: string): Promise<boolean> {
    const link = this.layerLink(repo, digest);
    if ((await fileSize(link)) === undefined) return false;
    await rm(link, { force: true });
    return true;
  }

  /**
   * Moves a verified file into the content store (atomic rename). If the blob is already
   * stored the file is dropped (same digest, same bytes), but only once the stored one is made
   * fresh, which also proves it is still there: a gc may take it between a look and the drop
   * (gc.ts takeBlob), and the upload's bytes would be lost with it; gone, the file takes its place.
   */
  async commitBlobFile(file: string, digest: string): Promise<void> {
    const dest = this.blobPath(digest);
    await mkdir(this.blobsDir, { recursive: true });
    if (await touch(dest)) {
      await rm(file, { force: true }); // fresh again: gc's grace period covers the push now referencing it
      return;
    }
    await rename(file, dest);
  }

  // ---- manifests ----

  /** Resolves a tag or digest to the manifest digest stored in `repo`, or throws MANIFEST_UNKNOWN. */
  async resolve(repo: string, ref: string): Promise<{ digest: string; link: ManifestLink }> {
    let digest = ref;
    if (!looksLikeDigest(ref)) {
      if (!isTag(ref)) throw new RegistryRequestError(400, "TAG_INVALID", `Invalid tag "${ref.slice(0, 200)}"`);
      const target = (await readTextOrUndefined(this.tagFile(repo, ref)))?.trim();
      if (!target) throw new RegistryRequestError(404, "MANIFEST_UNKNOWN", `Manifest "${repo}:${ref}" not found: no such tag`);
      digest = target;
    }
    if (!isSha256Digest(digest)) {
      throw new RegistryRequestError(404, "MANIFEST_UNKNOWN", `Manifest "${repo}@${digest.slice(0, 200)}" not found: only sha256 is stored`);
    }
    const text = await readTextOrUndefined(this.revisionLink(repo, digest));
    if (text === undefined) throw new RegistryRequestError(404, "MANIFEST_UNKNOWN", `Manifest "${repo}@${digest}" not found`);
    return { digest, link: JSON.parse(text) as ManifestLink };
  }

  /** Reads a manifest's exact bytes. */
  async getManifest(repo: string, ref: string): Promise<{ digest: string; link: ManifestLink; bytes: Uint8Array }> {
    const { digest, link } = await this.resolve(repo, ref);
    const file = Bun.file(this.blobPath(digest));
    if (!(await file.exists())) throw new RegistryRequestError(404, "MANIFEST_UNKNOWN", `Manifest "${repo}@${digest}" not found: content missing`);
    return { digest, link, bytes: new Uint8Array(await file.arrayBuffer()) };
  }

  /**
   * Stores a manifest byte-exact under its digest, links it into `repo` and points `ref` at it
   * when `ref` is a tag. Every blob and child manifest it references must already be in `repo`;
   * the blobs, and the manifest's own content, are made fresh, so a gc running now keeps them (gc.ts).
   *
   * @throws {RegistryRequestError} MANIFEST_INVALID, MANIFEST_BLOB_UNKNOWN, DIGEST_INVALID, TAG_INVALID.
   */
  async putManifest(repo: string, ref: string, bytes: Uint8Array, contentType: string | undefined): Promise<{ digest: string; manifest: ParsedManifest }> {
    const digest = `sha256:${new Bun.CryptoHasher("sha256").update(bytes).digest("hex")}`;
    const byDigest = looksLikeDigest(ref);
    if (byDigest) {
      if (!isSha256Digest(ref)) throw new RegistryRequestError(400, "DIGEST_INVALID", `Cannot store manifest under "${ref.slice(0, 200)}": only sha256 digests are supported`);
      if (ref !== digest) throw new RegistryRequestError(400, "DIGEST_INVALID", `Cannot store manifest under "${ref}": its content has digest ${digest}`);
    } else if (!isTag(ref)) {
      throw new RegistryRequestError(400, "TAG_INVALID", `Invalid tag "${ref.slice(0, 200)}"`);
    }
    const manifest = parseManifest(bytes, contentType);
    // A blob still linked but not stored is one a gc took (it drops the links after its sweep):
    // publish's HEAD may have found it a moment before, so "not in repository" would mislead.
    const blobUnknown = async (digest: string) =>
      (await fileSize(this.layerLink(repo, digest))) !== undefined || (await this.gcMayHaveTaken(digest))
        ? refusedDuringGc(repo, "blob", digest)
        : new RegistryRequestError(400, "MANIFEST_BLOB_UNKNOWN", `Manifest refused: blob ${digest} is not in repository "${repo}"`, { digest });
    for (const d of manifest.blobs) {
      const size = await this.blobSize(repo, d.digest);
      if (size === undefined) throw await blobUnknown(d.digest);
      if (size !== d.size) {
        throw new RegistryRequestError(400, "MANIFEST_INVALID", `Manifest refused: blob ${d.digest} has ${size} bytes, the manifest says ${d.size}`, { digest: d.digest });
      }
      // Fresh again before the manifest is visible: a gc that marked before this put spares it, or
      // took it first and this put fails (gc.ts, the sweep).
      if (!(await touch(this.blobPath(d.digest)))) throw await blobUnknown(d.digest);
    }
    // A bundle's index, named only in an annotation, is content gc keeps for the manifest too. Not
    // required here (a copy of the app from elsewhere may come without it), but one missing while
    // a gc runs may be one its sweep took a moment ago (gc.ts takeBlob): refused as for a blob, as
    // the put would otherwise be stored without it. Push it again once gc ends.
    const required = new Set(manifest.blobs.map((b) => b.digest));
    for (const d of manifest.referenced) {
      if (required.has(d) || (await touch(this.blobPath(d)))) continue;
      if (await this.gcMayHaveTaken(d)) throw refusedDuringGc(repo, "bundle index", d);
    }
    for (const d of manifest.manifests) {
      const known = await readTextOrUndefined(this.revisionLink(repo, d.digest));
      if (known === undefined) {
        throw new RegistryRequestError(400, "MANIFEST_BLOB_UNKNOWN", `Index refused: manifest ${d.digest} is not in repository "${repo}"`, { digest: d.digest });
      }
    }
    const blob = this.blobPath(digest);
    if (!(await touch(blob))) await writeFileAtomic(blob, bytes); // the manifest's own content: fresh again, or written
    const link: ManifestLink = { mediaType: manifest.mediaType, size: bytes.byteLength };
    if (manifest.artifactType) link.artifactType = manifest.artifactType;
    if (manifest.subject) link.subject = manifest.subject;
    if (manifest.annotations) link.annotations = manifest.annotations;
    await writeFileAtomic(this.revisionLink(repo, digest), JSON.stringify(link));
    if (manifest.subject) await writeFileAtomic(join(this.referrersDir(repo, manifest.subject), digest.slice(7)), "");
    if (!byDigest) await writeFileAtomic(this.tagFile(repo, ref), digest);
    return { digest, manifest };
  }

  /** Whether content found not stored may be gone because of a gc: it is aside (gc.ts takeBlob), or a gc runs. */
  private async gcMayHaveTaken(digest: string): Promise<boolean> {
    return (await fileSize(asidePath(this.blobPath(digest)))) !== undefined || this.gcRunning();
  }

  /**
   * Deletes a tag (ref is a tag) or a manifest and every tag pointing at it (ref is a digest).
   *
   * @throws {RegistryRequestError} 404 MANIFEST_UNKNOWN if there is nothing to delete.
   */
  async deleteManifest(repo: string, ref: string): Promise<void> {
    if (!looksLikeDigest(ref)) {
      await this.resolve(repo, ref); // 404 for an unknown tag
      await rm(this.tagFile(repo, ref), { force: true });
      return;
    }
    const { digest, link } = await this.resolve(repo, ref);
    await rm(this.revisionLink(repo, digest), { force: true });
    for (const tag of await this.listTags(repo)) {
      const target = (await readTextOrUndefined(this.tagFile(repo, tag)))?.trim();
      if (target === digest) await rm(this.tagFile(repo, tag), { force: true });
    }
    if (link.subject) await rm(join(this.referrersDir(repo, link.subject), digest.slice(7)), { force: true });
  }

  /** All tags of `repo`, sorted; throws NAME_UNKNOWN for an unknown repository. */
  async listTags(repo: string): Promise<string[]> {
    if (!(await this.repoExists(repo))) throw new RegistryRequestError(404, "NAME_UNKNOWN", `Repository "${repo}" not found`);
    const tags = (await listDir(this.tagsDir(repo))).filter((t) => !t.startsWith(".")); // ".": a write in progress (lib/fs temp file)
    return tags.sort();
  }

  /** Descriptors of the manifests in `repo` whose `subject` is `digest`, optionally filtered. */
  async referrers(repo: string, digest: string, artifactType?: string): Promise<Descriptor[]> {
    const out: Descriptor[] = [];
    for (const hex of (await listDir(this.referrersDir(repo, digest))).sort()) {
      if (!/^[a-f0-9]{64}$/.test(hex)) continue;
      const text = await readTextOrUndefined(this.revisionLink(repo, `sha256:${hex}`));
      if (text === undefined) continue; // deleted since
      const link = JSON.parse(text) as ManifestLink;
      if (artifactType !== undefined && link.artifactType !== artifactType) continue;
      const d: Descriptor = { mediaType: link.mediaType, digest: `sha256:${hex}`, size: link.size };
      if (link.artifactType) d.artifactType = link.artifactType;
      if (link.annotations) d.annotations = link.annotations;
      out.push(d);
    }
    return out;
  }
}

/** A manifest put refused for a blob or bundle index a gc may have just removed (gcMayHaveTaken): the one wording for both. */
function refusedDuringGc(repo: string, what: "blob" | "bundle index", digest: string): RegistryRequestError {
  return new RegistryRequestError(
    400,
    "MANIFEST_BLOB_UNKNOWN",
    `Manifest refused: its ${what} ${digest} is not in repository "${repo}" while a registry gc runs (it may have just removed it): push it again once gc ends`,
    { digest },
  );
}

/**
 * Sets a stored file's mtime to now, which gc reads as "in use since it started" (gc.ts): false
 * if the file is not there. Any other failure (a file the gateway does not own) is not the
 * caller's concern: the file is there.
 */
async function touch(path: string): Promise<boolean> {
  const now = new Date();
  try {
    await utimes(path, now, now);
    return true;
  } catch (err) {
    return !isNotFound(err);
  }
}
