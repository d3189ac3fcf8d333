/**
 * Makes a component's image available in the engine the way the compose flow
 * does: pulled with lib/oci into fioup's content-addressed store (shared
 * blobs come once, partial downloads resume, every blob is verified), then
 * loaded from the store with the runtime's loader, which checks the image ID
 * against the pinned config digest. An image the engine already has under the
 * reference as written is used as it is, as `docker run` and Kanto do.
 *
 * @module
 */
import { BlobStore } from "../../lib/oci/blob-store.ts";
import { pullImage } from "../../lib/oci/image.ts";
import { parseReference, referenceTarget } from "../../lib/oci/reference.ts";
import type { RegistryClient } from "../../lib/oci/registry-client.ts";
import { registryClients } from "../../lib/oci/registry-clients.ts";
import type { Platform } from "../../lib/oci/platform.ts";
import { loadImageFromStore, localTag } from "../runtime/images.ts";
import { BlobNotInStoreError } from "../runtime/_store.ts";
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
  private readonly inflight = new Map<string, { promise: Promise<string>; listeners: Set<(done: number, total: number) => void> }>();

  constructor(private readonly o: ImageSourceOptions) {
    this.store = new BlobStore(o.storeRoot);
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
      const pullAndLoad = async () => {
        const pulled = await pullImage(this.client(parsed.registry), parsed.repository, referenceTarget(parsed), this.store, {
          ...(this.o.platform ? { platform: this.o.platform } : {}),
          ...(opts.signal ? { signal: opts.signal } : {}),
          onProgress: opts.onProgress,
          retries: 2,
        });
        return await loadImageFromStore(this.o.engine, this.o.storeRoot, `${repo}@${pulled.manifestDigest}`, {
          ...(this.o.platform ? { platform: this.o.platform } : {}),
          ...(opts.signal ? { signal: opts.signal } : {}),
        });
      };
      // The store is the compose apps' too, and a compose update's clean-up (fioup daemon runs both)
      // prunes it to its own target's blobs: one that lands between this pull and this load takes
      // what was just pulled. Pulled again once; what is already there is not fetched twice.
      const loaded = await pullAndLoad().catch((e: unknown) => (e instanceof BlobNotInStoreError ? pullAndLoad() : Promise.reject(e)));
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
