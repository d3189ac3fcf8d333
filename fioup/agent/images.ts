/**
 * Makes a component's image available in the engine the way the compose flow
 * does: pulled with lib/oci into fioup's content-addressed store (shared
 * blobs come once, partial downloads resume, every blob is verified), then
 * loaded from the store with the runtime's loader, which checks the image ID
 * against the pinned config digest. An image the engine already has under the
 * reference as written is used as it is, as `docker run` and Kanto do.
 *
 * The store is the compose apps' too, and a compose update's clean-up prunes it to its own
 * target's blobs (in this process under `fioup daemon`, or in a `fioup update` beside it): each
 * pull and load holds a lease on the blobs it stores (lib/device/store.ts), taken before each
 * blob is looked for or fetched and released after the load, so a prune leaves them and their
 * partial downloads alone.
 *
 * @module
 */
import { DeviceBlobStore, type BlobLease } from "../../lib/device/store.ts";
import { BlobStore, type BlobDescriptor, type PullBlobOptions } from "../../lib/oci/blob-store.ts";
import { digestBytes } from "../../lib/oci/digest.ts";
import { pullImage } from "../../lib/oci/image.ts";
import { parseReference, referenceTarget } from "../../lib/oci/reference.ts";
import type { RegistryClient } from "../../lib/oci/registry-client.ts";
import { registryClients } from "../../lib/oci/registry-clients.ts";
import type { Platform } from "../../lib/oci/platform.ts";
import { loadImageFromStore, localTag } from "../runtime/images.ts";
import type { DockerEngine } from "../runtime/docker-engine.ts";
import { FIOUP_VERSION } from "../version.ts";
import type { RegistryAccess } from "./config.ts";

/** The image could not be pulled or loaded; the message says which and why. */
export class ImagePullError extends Error {
  override name = "ImagePullError";
  constructor(ref: string, cause: unknown) {
    super(`Cannot pull image "${ref}": ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }
}

/** The agent's store as pullImage sees it: each blob is leased before it is looked for or fetched. */
class LeasedStore extends BlobStore {
  constructor(
    private readonly shared: BlobStore, // one per agent: concurrent pulls of a blob share one download
    private readonly lease: BlobLease,
  ) {
    super(shared.root, { ingestDir: shared.ingestDir });
  }

  override async pull(client: RegistryClient, repo: string, desc: BlobDescriptor, opts?: PullBlobOptions): Promise<{ fetched: number }> {
    await this.lease.add([desc.digest]);
    return await this.shared.pull(client, repo, desc, opts);
  }

  override async writeBytes(bytes: Uint8Array, expected?: string): Promise<string> {
    await this.lease.add([expected ?? digestBytes(bytes)]);
    return await this.shared.writeBytes(bytes, expected);
  }
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$/;

export interface ImageSourceOptions {
  engine: DockerEngine;
  storeRoot: string;
  registries: Record<string, RegistryAccess>;
  platform?: Platform;
}

/** Pulls into the store and loads into the engine; one instance per agent (it caches registry tokens). */
export class ImageSource {
  private readonly store: BlobStore;
  private readonly device: DeviceBlobStore;
  private readonly inflight = new Map<string, { promise: Promise<string>; listeners: Set<(done: number, total: number) => void> }>();

  constructor(private readonly o: ImageSourceOptions) {
    this.store = new BlobStore(o.storeRoot);
    this.device = new DeviceBlobStore(o.storeRoot);
  }

  /** The registry client for a host (one per host), with the credentials and transport of the agent's config. */
  readonly client: (host: string) => RegistryClient = registryClients(
    (host) => {
      const access = this.o.registries[host] ?? {};
      return {
        scheme: (access.insecure ?? LOOPBACK.test(host)) ? "http" : "https",
        ...(access.username !== undefined ? { auth: { username: access.username, password: access.password ?? "" } } : {}),
        ...(access.ca ? { tls: { ca: access.ca } } : {}),
      };
    },
    { userAgent: `fioup-agent/${FIOUP_VERSION}` },
  );

  /** The name the engine knows the image by when it has it, without pulling. */
  async local(ref: string): Promise<string | undefined> {
    const parsed = parseReference(ref);
    const name = parsed.digest ? localTag(ref).full : ref;
    return (await this.o.engine.inspectImage(name)) ? name : undefined;
  }

  /**
   * Returns the name to create the container from, pulling and loading the
   * image first when the engine lacks it. `onProgress` gets bytes of the
   * download (done, total).
   * @throws {ImagePullError}
   */
  async ensure(ref: string, opts: { signal?: AbortSignal; onProgress?: (done: number, total: number) => void } = {}): Promise<string> {
    // Components often share an image: one pull per reference, its progress to every caller.
    let pending = this.inflight.get(ref);
    if (!pending) {
      const listeners = new Set<(done: number, total: number) => void>();
      const promise = this.fetch(ref, { ...(opts.signal ? { signal: opts.signal } : {}), onProgress: (d, t) => listeners.forEach((l) => l(d, t)) });
      pending = { promise, listeners };
      this.inflight.set(ref, pending);
      promise.then(
        () => this.inflight.delete(ref),
        () => this.inflight.delete(ref),
      );
    }
    if (opts.onProgress) pending.listeners.add(opts.onProgress);
    return await pending.promise;
  }

  private async fetch(ref: string, opts: { signal?: AbortSignal; onProgress: (done: number, total: number) => void }): Promise<string> {
    try {
      const have = await this.local(ref);
      if (have) return have;
      const parsed = parseReference(ref);
      // The reference as written, pinned to what was pulled: the loader's local tag comes from it.
      const base = ref.includes("@") ? ref.slice(0, ref.indexOf("@")) : ref;
      const lastColon = base.lastIndexOf(":");
      const repo = lastColon > base.lastIndexOf("/") ? base.slice(0, lastColon) : base;
      const lease = this.device.lease("agent");
      let loaded: Awaited<ReturnType<typeof loadImageFromStore>>;
      try {
        const pulled = await pullImage(this.client(parsed.registry), parsed.repository, referenceTarget(parsed), new LeasedStore(this.store, lease), {
          ...(this.o.platform ? { platform: this.o.platform } : {}),
          ...(opts.signal ? { signal: opts.signal } : {}),
          onProgress: opts.onProgress,
          retries: 2,
        });
        loaded = await loadImageFromStore(this.o.engine, this.o.storeRoot, `${repo}@${pulled.manifestDigest}`, {
          ...(this.o.platform ? { platform: this.o.platform } : {}),
          ...(opts.signal ? { signal: opts.signal } : {}),
        });
      } finally {
        lease.release();
      }
      if (parsed.digest) return loaded.tag;
      // Tag it as written too, so `docker ps` shows the reference the desired state used.
      await this.o.engine.tagImage(loaded.imageId, repo, parsed.tag ?? "latest");
      return ref;
    } catch (err) {
      if (err instanceof ImagePullError) throw err;
      throw new ImagePullError(ref, err);
    }
  }
}
