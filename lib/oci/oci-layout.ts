/**
 * OCI image layout directories (`oci-layout`, `index.json`, `blobs/sha256/<hex>`): the on-disk
 * exchange format skopeo, buildkit and crane read and write. Blobs go through a BlobStore, so
 * a layout gets the same verified, atomic writes as the device store.
 *
 * @module
 */
import { mkdir, readdir, rmdir } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../fs/atomic-write.ts";
import { BlobStore } from "./blob-store.ts";
import type { Descriptor, ImageIndex } from "./manifest.ts";
import { MediaType } from "./media-types.ts";

/** The annotation naming an index entry (`v1`, or a full reference). */
export const REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name";

/** Thrown when a directory is not an OCI layout or lacks the asked-for image. */
export class OciLayoutError extends Error {
  override name = "OciLayoutError";
}

/**
 * An OCI image layout directory.
 *
 * @example
 * ```ts
 * const layout = await OciLayout.create("/tmp/img");
 * await layout.addManifest(desc, "v1");
 * ```
 */
export class OciLayout {
  readonly dir: string;
  readonly store: BlobStore;

  private constructor(dir: string) {
    this.dir = dir;
    this.store = new BlobStore(dir, { ingestDir: join(dir, ".ingest") });
  }

  /** Opens an existing layout. @throws {OciLayoutError} if `oci-layout` is missing or wrong */
  static async open(dir: string): Promise<OciLayout> {
    let marker: { imageLayoutVersion?: string };
    try {
      marker = (await Bun.file(join(dir, "oci-layout")).json()) as { imageLayoutVersion?: string };
    } catch (err) {
      throw new OciLayoutError(`Cannot open OCI layout ${dir}: no readable oci-layout file (${(err as Error).message})`);
    }
    if (marker.imageLayoutVersion !== "1.0.0") throw new OciLayoutError(`Cannot open OCI layout ${dir}: unsupported imageLayoutVersion ${JSON.stringify(marker.imageLayoutVersion)}`);
    return new OciLayout(dir);
  }

  /** Opens a layout, creating an empty one (marker and empty index) if the directory has none. */
  static async create(dir: string): Promise<OciLayout> {
    await mkdir(join(dir, "blobs", "sha256"), { recursive: true });
    if (!(await Bun.file(join(dir, "oci-layout")).exists())) {
      await Bun.write(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
    }
    if (!(await Bun.file(join(dir, "index.json")).exists())) {
      await writeFileAtomic(join(dir, "index.json"), JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: [] }));
    }
    return await OciLayout.open(dir);
  }

  /** The top-level index.json. */
  async index(): Promise<ImageIndex> {
    try {
      const idx = (await Bun.file(join(this.dir, "index.json")).json()) as ImageIndex;
      if (!Array.isArray(idx.manifests)) throw new Error("no manifests array");
      return idx;
    } catch (err) {
      throw new OciLayoutError(`Cannot read ${join(this.dir, "index.json")}: ${(err as Error).message}`);
    }
  }

  /**
   * Finds an entry of index.json: by ref name (the annotation, or the tag part of a full
   * reference stored there), or the only entry when no name is given.
   *
   * @throws {OciLayoutError} If there is no such entry, or several and no name.
   */
  async resolve(refName?: string): Promise<Descriptor> {
    const { manifests } = await this.index();
    if (refName === undefined) {
      if (manifests.length === 1) return manifests[0]!;
      throw new OciLayoutError(`Cannot pick an image in ${this.dir}: index.json has ${manifests.length} entries, name one`);
    }
    const found = manifests.find((m) => {
      const n = m.annotations?.[REF_NAME_ANNOTATION];
      return n === refName || (n !== undefined && n.endsWith(`:${refName}`) && !n.endsWith(`/:${refName}`));
    });
    if (!found) throw new OciLayoutError(`Cannot find "${refName}" in ${this.dir}: index.json names ${manifests.map((m) => m.annotations?.[REF_NAME_ANNOTATION]).filter(Boolean).join(", ") || "nothing"}`);
    return found;
  }

  /** Adds (or replaces, by ref name) an entry in index.json. Its blobs must already be stored. */
  async addManifest(desc: Descriptor, refName?: string): Promise<void> {
    const idx = await this.index();
    const entry: Descriptor = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
    if (desc.platform) entry.platform = desc.platform;
    const annotations = { ...desc.annotations };
    if (refName !== undefined) annotations[REF_NAME_ANNOTATION] = refName;
    if (Object.keys(annotations).length) entry.annotations = annotations;
    idx.manifests = idx.manifests.filter((m) =>
      refName === undefined ? m.digest !== desc.digest || m.annotations?.[REF_NAME_ANNOTATION] !== undefined : m.annotations?.[REF_NAME_ANNOTATION] !== refName,
    );
    idx.manifests.push(entry);
    await writeFileAtomic(join(this.dir, "index.json"), JSON.stringify(idx));
  }

  /** Removes the ingest directory if nothing is left in it (keeps the layout clean for other tools). */
  async tidy(): Promise<void> {
    const ingest = this.store.ingestDir;
    try {
      if ((await readdir(ingest)).length === 0) await rmdir(ingest);
    } catch {
      // absent or in use
    }
  }
}
