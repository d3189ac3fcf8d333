/**
 * Copying images between a registry and an OCI image layout directory, and from a store to a
 * registry, in terms of the pull and push pieces (the docker-save directions live in
 * docker-archive.ts). One call per direction, so callers (publish, preload) never walk
 * manifests themselves.
 *
 * @module
 */
import type { BlobStore } from "./blob-store.ts";
import { pullImage, forEachLimit, selectPlatformManifest, type PullImageOptions } from "./image.ts";
import { parseManifest, type Descriptor } from "./manifest.ts";
import { OciLayout } from "./oci-layout.ts";
import { pushManifest, registrySource, storeSource, type PushOptions, type PushResult } from "./push.ts";
import type { RegistryClient } from "./registry-client.ts";

/** Options of {@link copyRegistryToLayout}. */
export interface RegistryToLayoutOptions extends Omit<PullImageOptions, "platform"> {
  /** Copy only this platform's manifest; default: the whole index (every platform). */
  platform?: PullImageOptions["platform"];
  /** Name in index.json (`org.opencontainers.image.ref.name`); default the tag, if `ref` is one. */
  refName?: string;
}

/**
 * Copies an image from a registry into an OCI layout directory (created if needed).
 *
 * @example
 * ```ts
 * await copyRegistryToLayout(client, "library/busybox", "1.36", "/tmp/bb", { platform: { os: "linux", architecture: "arm64" } });
 * ```
 * @returns The digest recorded in index.json and the bytes downloaded.
 */
export async function copyRegistryToLayout(client: RegistryClient, repo: string, ref: string, dir: string, opts: RegistryToLayoutOptions = {}): Promise<{ digest: string; mediaType: string; fetched: number }> {
  const layout = await OciLayout.create(dir);
  const refName = opts.refName ?? (ref.includes(":") ? undefined : ref);
  let desc: Descriptor;
  let fetched = 0;
  if (opts.platform) {
    const img = await pullImage(client, repo, ref, layout.store, { ...opts, platform: opts.platform });
    fetched = img.fetched;
    const bytes = await layout.store.read(img.manifestDigest);
    desc = { mediaType: img.manifestMediaType, digest: img.manifestDigest, size: bytes.byteLength };
  } else {
    const top = await client.getManifest(repo, ref, { signal: opts.signal });
    const parsed = parseManifest(top.bytes, top.mediaType);
    const children = parsed.kind === "index" ? parsed.index.manifests : [];
    if (parsed.kind === "manifest") {
      const img = await pullImage(client, repo, top.digest, layout.store, opts);
      fetched += img.fetched;
    }
    await forEachLimit(children, 1, async (child) => {
      const img = await pullImage(client, repo, child.digest, layout.store, opts);
      fetched += img.fetched;
    });
    await layout.store.writeBytes(top.bytes, top.digest);
    desc = { mediaType: parsed.mediaType, digest: top.digest, size: top.bytes.byteLength };
  }
  await layout.addManifest(desc, refName);
  await layout.tidy();
  return { digest: desc.digest, mediaType: desc.mediaType, fetched };
}

/**
 * Pushes an image from an OCI layout directory (written by skopeo, buildkit or us) to
 * `repo:ref`. `refName` picks the index.json entry; default the only one.
 *
 * @throws {OciLayoutError | RegistryError | BlobNotFoundError}
 */
export async function copyLayoutToRegistry(dir: string, client: RegistryClient, repo: string, ref: string, opts: PushOptions & { refName?: string } = {}): Promise<PushResult> {
  const layout = await OciLayout.open(dir);
  const desc = await layout.resolve(opts.refName);
  return await pushManifest(client, repo, ref, await layout.store.read(desc.digest), storeSource(layout.store), opts);
}

/**
 * Copies an image from one registry (or repository) to another, e.g. to mirror a public base
 * image into the factory registry. Manifest bytes are copied unchanged (the digest stays the
 * source's); only blobs the destination lacks are downloaded, verified, into `staging` and
 * uploaded. With `platform`, an index is narrowed to that platform's manifest.
 *
 * @returns The push result and the bytes downloaded from the source.
 * @throws {NoMatchingPlatformError | RegistryError | DigestMismatchError}
 */
export async function copyRegistryToRegistry(
  from: { client: RegistryClient; repo: string; ref: string },
  to: { client: RegistryClient; repo: string; ref: string },
  staging: BlobStore,
  opts: PushOptions & { platform?: PullImageOptions["platform"] } = {},
): Promise<PushResult & { fetched: number }> {
  let top = await from.client.getManifest(from.repo, from.ref, { signal: opts.signal });
  let fetched = top.bytes.byteLength;
  if (opts.platform) {
    const parsed = parseManifest(top.bytes, top.mediaType);
    if (parsed.kind === "index") {
      top = await from.client.getManifest(from.repo, selectPlatformManifest(parsed.index, opts.platform).digest, { signal: opts.signal });
      fetched += top.bytes.byteLength;
    }
  }
  const source = registrySource(from.client, from.repo, staging, { signal: opts.signal, onFetched: (n) => (fetched += n) });
  const r = await pushManifest(to.client, to.repo, to.ref, top.bytes, source, opts);
  return { ...r, fetched };
}
