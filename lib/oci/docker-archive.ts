/**
 * `docker save` tarballs (the legacy `manifest.json` format `docker load` wants): reading one
 * to push its image to a registry (publish, after `docker build` + `docker save`), and
 * streaming one out of a BlobStore so the engine can `docker load` an image pulled earlier
 * (fioup, preload) with the image ID equal to the pinned config digest.
 *
 * @module
 */
import { createWriteStream } from "node:fs";
import { mkdtemp, open, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { createGunzip, createGzip } from "node:zlib";
import { indexTar, tarChunks, toReadableStream, type TarEntry, type TarSource } from "./_tar.ts";
import type { BlobStore } from "./blob-store.ts";
import { Digester, digestBlob, sha256 } from "./digest.ts";
import { releaseChunks } from "./_memory.ts";
import { parseManifest, type Descriptor, type ImageManifest } from "./manifest.ts";
import { MediaType, sniffCompression } from "./media-types.ts";
import { pushManifest, type BlobSource, type PushOptions, type PushResult } from "./push.ts";
import { parseReference } from "./reference.ts";
import type { RegistryClient } from "./registry-client.ts";

/** Thrown when a tarball is not a usable `docker save` archive. */
export class DockerArchiveError extends Error {
  override name = "DockerArchiveError";
}

/** One entry of a docker-save `manifest.json`. */
export interface DockerArchiveImage {
  Config: string;
  RepoTags: string[] | null;
  Layers: string[];
}

/** An opened docker-save archive: its images and where each file sits in the tar. */
export interface DockerArchive {
  /** The (uncompressed) tar actually read; a temp copy if the input was gzipped. */
  path: string;
  images: DockerArchiveImage[];
  entries: Map<string, TarEntry>;
  /** A file of the archive as a lazy Blob (a slice of the tar, never copied). */
  file(name: string): Blob;
  /** Removes the temp copy, if one was made. */
  close(): Promise<void>;
}

/**
 * Opens a `docker save` tarball (plain or gzipped) and reads its manifest.json.
 *
 * @throws {DockerArchiveError} If it has no manifest.json or names files it does not hold.
 */
export async function openDockerArchive(path: string, opts: { tmpDir?: string } = {}): Promise<DockerArchive> {
  let tarPath = path;
  let tmp: string | undefined;
  const fh = await open(path, "r");
  const head = new Uint8Array(4);
  try {
    await fh.read(head, 0, 4, 0);
  } finally {
    await fh.close();
  }
  if (sniffCompression(head) === "gzip") {
    tmp = await mkdtemp(join(opts.tmpDir ?? tmpdir(), "docker-archive-"));
    tarPath = join(tmp, "archive.tar");
    await pipeline(Bun.file(path).stream(), createGunzip(), createWriteStream(tarPath));
  }
  const close = async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  };
  try {
    const entries = await indexTar(tarPath);
    const file = (name: string): Blob => {
      const e = entries.get(name.replace(/^(\.\/)+/, ""));
      if (!e) throw new DockerArchiveError(`Invalid docker archive ${path}: manifest.json names "${name}", which it does not contain`);
      return Bun.file(tarPath).slice(e.offset, e.offset + e.size);
    };
    const m = entries.get("manifest.json");
    if (!m) throw new DockerArchiveError(`Invalid docker archive ${path}: no manifest.json (is it a docker save tarball?)`);
    let images: DockerArchiveImage[];
    try {
      images = JSON.parse(await file("manifest.json").text()) as DockerArchiveImage[];
    } catch (err) {
      throw new DockerArchiveError(`Invalid docker archive ${path}: manifest.json is not JSON (${(err as Error).message})`);
    }
    if (!Array.isArray(images) || images.length === 0) throw new DockerArchiveError(`Invalid docker archive ${path}: manifest.json lists no images`);
    for (const img of images) {
      if (typeof img.Config !== "string" || !Array.isArray(img.Layers)) throw new DockerArchiveError(`Invalid docker archive ${path}: manifest.json entry lacks Config or Layers`);
      file(img.Config);
      img.Layers.forEach((l) => file(l));
    }
    return { path: tarPath, images, entries, file, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Options of {@link readDockerArchiveImage}. */
export interface ReadDockerArchiveOptions {
  /** Which image of a multi-image archive (by one of its RepoTags); default the first. */
  repoTag?: string;
  /** Gzip uncompressed layers (default "gzip": smaller downloads for devices). */
  compress?: "gzip" | "none";
  /** Where compressed layers are staged (default the OS temp dir). */
  tmpDir?: string;
}

/** One image of a `docker save` tarball as registry content, staged on disk until `close()`. */
export interface DockerArchiveImageContent {
  /** The OCI image manifest and its bytes and digest (the digest to pin). */
  manifest: ImageManifest;
  manifestBytes: Uint8Array;
  digest: string;
  /** The config digest: the image ID `docker` reports. */
  configDigest: string;
  /** The config's bytes (platform, diff_ids...). */
  configBytes: Uint8Array;
  /** Layer digest → its size unpacked (a tar's size), for every layer whose size the archive shows. */
  uncompressedSizes: Record<string, number>;
  /** The config and layers, for {@link pushBlobs} / {@link pushManifest}. */
  source: BlobSource;
  /** Removes the staged layers and any temp copy of the archive. */
  close(): Promise<void>;
}

/**
 * Turns the image in a `docker save` tarball into OCI registry content without pushing it:
 * the config byte-exact (so the image ID `docker` reports stays the config digest),
 * uncompressed layers gzipped with fixed settings (the same image always gives the same
 * digests) and checked against the config's diff_ids while they are read, and an OCI
 * manifest. Call `close()` when done.
 *
 * @throws {DockerArchiveError}
 */
export async function readDockerArchiveImage(tarPath: string, opts: ReadDockerArchiveOptions = {}): Promise<DockerArchiveImageContent> {
  const archive = await openDockerArchive(tarPath, { tmpDir: opts.tmpDir });
  let staging: string | undefined;
  const close = async () => {
    if (staging) await rm(staging, { recursive: true, force: true });
    await archive.close();
  };
  try {
    staging = await mkdtemp(join(opts.tmpDir ?? tmpdir(), "docker-push-"));
    const img = opts.repoTag === undefined ? archive.images[0]! : archive.images.find((i) => i.RepoTags?.includes(opts.repoTag!));
    if (!img) throw new DockerArchiveError(`Cannot find image "${opts.repoTag}" in ${tarPath}: it holds ${archive.images.flatMap((i) => i.RepoTags ?? []).join(", ") || "untagged images"}`);
    const configBytes = new Uint8Array(await archive.file(img.Config).arrayBuffer());
    const configDigest = sha256(configBytes);
    let config: { rootfs?: { diff_ids?: string[] } };
    try {
      config = JSON.parse(new TextDecoder().decode(configBytes));
    } catch (err) {
      throw new DockerArchiveError(`Invalid docker archive ${tarPath}: config ${img.Config} is not JSON (${(err as Error).message})`);
    }
    const diffIds = config.rootfs?.diff_ids ?? [];
    if (diffIds.length !== img.Layers.length) {
      throw new DockerArchiveError(`Invalid docker archive ${tarPath}: config lists ${diffIds.length} diff_ids for ${img.Layers.length} layers`);
    }
    const contents = new Map<string, Blob | { path: string } | Uint8Array>([[configDigest, configBytes]]);
    const layers: Descriptor[] = [];
    const uncompressedSizes: Record<string, number> = {};
    for (const [i, name] of img.Layers.entries()) {
      const blob = archive.file(name);
      const compression = sniffCompression(new Uint8Array(await blob.slice(0, 4).arrayBuffer()));
      if (compression === "none" && (opts.compress ?? "gzip") === "gzip") {
        const out = join(staging, `${i}.tar.gz`);
        const inHash = new Digester();
        const outHash = new Digester();
        await pipeline(
          async function* () {
            for await (const c of blob.stream()) {
              inHash.update(c);
              yield c;
            }
          },
          createGzip({ level: 6 }),
          async function* (src: AsyncIterable<Uint8Array>) {
            for await (const c of src) {
              outHash.update(c);
              yield c;
            }
          },
          createWriteStream(out),
        );
        const diff = inHash.digest();
        if (diff !== diffIds[i]) throw new DockerArchiveError(`Invalid docker archive ${tarPath}: layer ${name} hashes to ${diff}, config says ${diffIds[i]}`);
        const digest = outHash.digest();
        layers.push({ mediaType: MediaType.OciLayerGzip, digest, size: outHash.size });
        uncompressedSizes[digest] = inHash.size;
        contents.set(digest, { path: out });
      } else {
        const { digest, size } = await digestBlob(blob);
        if (compression === "none" && digest !== diffIds[i]) {
          throw new DockerArchiveError(`Invalid docker archive ${tarPath}: layer ${name} hashes to ${digest}, config says ${diffIds[i]}`);
        }
        const mediaType = compression === "gzip" ? MediaType.OciLayerGzip : compression === "zstd" ? MediaType.OciLayerZstd : MediaType.OciLayer;
        layers.push({ mediaType, digest, size });
        if (compression === "none") uncompressedSizes[digest] = size;
        contents.set(digest, blob);
      }
    }
    const manifest: ImageManifest = {
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: MediaType.OciConfig, digest: configDigest, size: configBytes.byteLength },
      layers,
    };
    const manifestBytes = new TextEncoder().encode(JSON.stringify(manifest));
    const source: BlobSource = {
      bytes: async (d) => {
        const c = contents.get(d);
        if (c instanceof Uint8Array) return c;
        throw new DockerArchiveError(`Cannot read ${d} from ${tarPath}: not a small blob`);
      },
      content: async (desc) => {
        const c = contents.get(desc.digest);
        if (!c) throw new DockerArchiveError(`Cannot read ${desc.digest} from ${tarPath}: not in the archive`);
        return c;
      },
    };
    return { manifest, manifestBytes, digest: sha256(manifestBytes), configDigest, configBytes, uncompressedSizes, source, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Options of {@link pushDockerArchive}. */
export interface PushDockerArchiveOptions extends PushOptions, ReadDockerArchiveOptions {}

/**
 * Pushes the image in a `docker save` tarball to `repo:ref` as an OCI manifest
 * ({@link readDockerArchiveImage} then {@link pushManifest}).
 *
 * @example
 * ```ts
 * const r = await pushDockerArchive(client, "main/app", "1a2b3c4", "/tmp/app.tar");
 * r.digest; // the manifest digest to pin
 * ```
 * @throws {DockerArchiveError | RegistryError}
 */
export async function pushDockerArchive(
  client: RegistryClient,
  repo: string,
  ref: string,
  tarPath: string,
  opts: PushDockerArchiveOptions = {},
): Promise<PushResult & { configDigest: string; manifest: ImageManifest; manifestBytes: Uint8Array }> {
  const img = await readDockerArchiveImage(tarPath, opts);
  try {
    const result = await pushManifest(client, repo, ref, img.manifestBytes, img.source, opts);
    return { ...result, configDigest: img.configDigest, manifest: img.manifest, manifestBytes: img.manifestBytes };
  } finally {
    await img.close();
  }
}

/** An image to put in a docker-save stream: its manifest in the store, and the tags to load it as. */
export interface DockerArchiveStreamImage {
  manifestDigest: string;
  /** `repository:tag` names docker gives the loaded image. */
  repoTags: string[];
}

/**
 * Streams a `docker save`-format tar of images held in a BlobStore, for `docker load` /
 * `POST /images/load`. Files are read from disk as the consumer pulls; nothing is built in
 * memory. Layers go as stored (gzip, zstd or plain: docker load decompresses them; a device
 * store may hold a layer as its uncompressed tar and hand that out under the layer's name), so the
 * image ID docker reports equals the manifest's config digest.
 *
 * @example
 * ```ts
 * const body = await dockerArchiveStream(store, [{ manifestDigest, repoTags: ["main/app:fioup-0123"] }]);
 * await fetch("http://docker/images/load?quiet=1", { method: "POST", body, unix: "/run/docker.sock" });
 * ```
 * @throws {BlobNotFoundError} Before any byte is produced, if a blob is missing from the store.
 * @throws {SyntaxError} If a repo tag is not `repository:tag`.
 */
export async function dockerArchiveStream(store: Pick<BlobStore, "read" | "open">, images: DockerArchiveStreamImage[]): Promise<ReadableStream<Uint8Array>> {
  const files: TarSource[] = [];
  const seen = new Set<string>();
  const entries: DockerArchiveImage[] = [];
  for (const img of images) {
    for (const t of img.repoTags) {
      const r = parseReference(t);
      if (r.digest !== undefined || !/:[\w][\w.-]*$/.test(t)) throw new SyntaxError(`Invalid repo tag "${t}": expected repository:tag`);
    }
    const parsed = parseManifest(await store.read(img.manifestDigest));
    if (parsed.kind !== "manifest") throw new DockerArchiveError(`Cannot export ${img.manifestDigest}: it is an index, not an image manifest`);
    const blobName = (d: string) => `blobs/${d.replace(":", "/")}`;
    const add = async (d: string) => {
      if (seen.has(d)) return;
      seen.add(d);
      files.push({ name: blobName(d), content: await store.open(d) });
    };
    await add(parsed.manifest.config.digest);
    for (const l of parsed.manifest.layers) await add(l.digest);
    entries.push({ Config: blobName(parsed.manifest.config.digest), RepoTags: img.repoTags, Layers: parsed.manifest.layers.map((l) => blobName(l.digest)) });
  }
  files.push({ name: "manifest.json", content: new TextEncoder().encode(JSON.stringify(entries)) });
  return toReadableStream(countReleased(tarChunks(files)));
}

/** Passes chunks through, telling {@link releaseChunks} how many bytes went by (bounded RSS while the engine loads). */
async function* countReleased(chunks: AsyncGenerator<Uint8Array>): AsyncGenerator<Uint8Array> {
  for await (const c of chunks) {
    yield c;
    releaseChunks(c.byteLength);
  }
}
