/**
 * Resolves a target's apps into the blobs the device needs: app manifest →
 * bundle + bundle index; the bundle's compose file → each service image → its
 * manifest for this platform → config + layers. Manifests and the bundle are
 * small and needed to walk further, so they are fetched here (into the store,
 * verified); configs, layers and bundle indexes are left to the caller
 * (fioup's fetch step, preload's assembly).
 *
 * @module
 */
import { createGunzip } from "node:zlib";
import { Readable } from "node:stream";
import * as tar from "tar-stream";
import { Type, type Static } from "@sinclair/typebox";
import { parseCompose } from "../compose/compose-file.ts";
import {
  APP_ARTIFACT_TYPE,
  BUNDLE_INDEX_DIGEST_ANNOTATION,
  BUNDLE_INDEX_SIZE_ANNOTATION,
  COMPOSE_FILE_NAMES,
  MAX_APP_MANIFEST_BYTES,
  MAX_COMPOSE_FILE_BYTES,
} from "../compose/app-format.ts";
import { NoMatchingPlatformError, selectPlatformManifest } from "../oci/image.ts";
import { parseManifest, type Descriptor } from "../oci/manifest.ts";
import { formatPlatform, hostPlatform, platformMatches, platformOfConfig, type Platform } from "../oci/platform.ts";
import { parseReference } from "../oci/reference.ts";
import type { RegistryClient } from "../oci/registry-client.ts";
import type { DeviceBlobStore } from "./store.ts";

const BlobKind = Type.Union(
  (["app-manifest", "bundle", "bundle-index", "index", "manifest", "config", "layer"] as const).map((k) => Type.Literal(k)),
);
export type BlobKind = Static<typeof BlobKind>;

/** One blob an app needs, and where to fetch it from. */
export const AppBlob = Type.Object({
  digest: Type.String(),
  size: Type.Integer({ minimum: 0 }),
  kind: BlobKind,
  mediaType: Type.String(),
  registry: Type.String(),
  repo: Type.String(),
});
export type AppBlob = Static<typeof AppBlob>;

/** What resolving a target's apps found (fioup saves it with the update as its plan). */
export const ResolvedApps = Type.Object({
  apps: Type.Array(Type.Object({ name: Type.String(), uri: Type.String(), images: Type.Array(Type.String()) })),
  /** Every blob the target's apps reference (deduplicated): what the store keeps after the update. */
  blobs: Type.Array(AppBlob),
  /** Bytes fetched while resolving (manifests, bundles). */
  resolveBytes: Type.Integer({ minimum: 0 }),
});
export type ResolvedApps = Static<typeof ResolvedApps>;

export class AppResolveError extends Error {
  override name = "AppResolveError";
}

export interface ResolveOptions {
  registry(host: string): RegistryClient;
  store: DeviceBlobStore;
  /**
   * The device's platform: picks the manifest out of an index, and an image of one platform
   * whose config says another is refused (fetched here, it is small). Default: this host's,
   * taken from an index only.
   */
  platform?: Platform;
  signal?: AbortSignal;
  /**
   * An app's bundle is on its way (`done` of `total` bytes; `done === total` once it is stored):
   * it is fetched here, before the fetch step, since its compose file names the images. Small as
   * a rule, but an app folder may ship up to a GiB, which must not be silent.
   */
  onBundleProgress?(p: { app: string; done: number; total: number }): void;
}

/** Fetches (or reads from the store) a manifest by digest, verified. */
async function manifestBytes(o: ResolveOptions, registry: string, repo: string, digest: string, max: number): Promise<{ bytes: Uint8Array; fetched: number }> {
  if (o.store.has(digest)) return { bytes: await o.store.readBytes(digest), fetched: 0 };
  const m = await o.registry(registry).getManifest(repo, digest, { maxBytes: max, signal: o.signal });
  o.store.putBytes(digest, m.bytes);
  return { bytes: m.bytes, fetched: m.bytes.byteLength };
}

/** The compose file text from a bundle tgz in the store. */
async function composeFromBundle(path: string): Promise<{ name: string; text: string }> {
  const extract = tar.extract();
  const files = new Map<string, string>();
  const done = new Promise<void>((resolve, reject) => {
    extract.on("entry", (header, stream, next) => {
      const name = header.name.replace(/^\.\//, "");
      if (header.type === "file" && (COMPOSE_FILE_NAMES as readonly string[]).includes(name) && (header.size ?? 0) <= MAX_COMPOSE_FILE_BYTES) {
        const chunks: Buffer[] = [];
        stream.on("data", (c: unknown) => chunks.push(c as Buffer));
        stream.on("end", () => {
          files.set(name, Buffer.concat(chunks).toString("utf8"));
          next();
        });
      } else {
        stream.on("end", () => next());
        stream.resume();
      }
    });
    extract.on("finish", resolve);
    extract.on("error", reject);
  });
  const src = Readable.fromWeb(Bun.file(path).stream() as any).pipe(createGunzip());
  src.on("error", (e) => extract.destroy(e));
  src.pipe(extract);
  await done;
  for (const n of COMPOSE_FILE_NAMES) {
    const text = files.get(n);
    if (text !== undefined) return { name: n, text };
  }
  throw new AppResolveError(`no ${COMPOSE_FILE_NAMES.join(" or ")} at the top of the bundle`);
}

/**
 * Resolves every app to its blobs.
 *
 * @throws {AppResolveError} A URI, manifest or compose file that is not a valid compose app.
 * @throws {RegistryError | DigestMismatchError} The registry refused or served other bytes.
 */
export async function resolveApps(apps: { name: string; uri: string }[], o: ResolveOptions): Promise<ResolvedApps> {
  const platform = o.platform ?? hostPlatform();
  const blobs = new Map<string, AppBlob>();
  const add = (b: AppBlob) => {
    if (!blobs.has(b.digest)) blobs.set(b.digest, b);
  };
  let resolveBytes = 0;
  const out: ResolvedApps["apps"] = [];
  for (const app of apps) {
    const fail = (why: string): never => {
      throw new AppResolveError(`Cannot resolve app ${app.name} (${app.uri}): ${why}`);
    };
    let ref;
    try {
      ref = parseReference(app.uri);
    } catch (e) {
      return fail((e as Error).message);
    }
    if (!ref.digest) fail("the URI is not pinned by digest");
    if (ref.repository.split("/").pop() !== app.name) fail(`the last path part must be the app name "${app.name}"`);
    const { registry, repository: repo, digest } = ref as { registry: string; repository: string; digest: string };
    const am = await manifestBytes(o, registry, repo, digest, MAX_APP_MANIFEST_BYTES + 1);
    resolveBytes += am.fetched;
    add({ digest, size: am.bytes.byteLength, kind: "app-manifest", mediaType: "application/vnd.oci.image.manifest.v1+json", registry, repo });
    const parsed = parseManifest(am.bytes);
    if (parsed.kind !== "manifest") return fail("the app manifest is an index");
    const man = parsed.manifest;
    if (man.artifactType && man.artifactType !== APP_ARTIFACT_TYPE) fail(`artifactType is ${man.artifactType}, not ${APP_ARTIFACT_TYPE}`);
    const layer = man.layers[0];
    if (!layer || man.layers.length !== 1) return fail("the app manifest must have exactly one layer (the bundle)");
    const idxDigest = layer.annotations?.[BUNDLE_INDEX_DIGEST_ANNOTATION];
    const idxSize = Number(layer.annotations?.[BUNDLE_INDEX_SIZE_ANNOTATION]);
    if (!idxDigest || !Number.isSafeInteger(idxSize)) fail("the bundle layer has no bundle index annotations");
    add({ digest: layer.digest, size: layer.size, kind: "bundle", mediaType: layer.mediaType, registry, repo });
    add({ digest: idxDigest!, size: idxSize, kind: "bundle-index", mediaType: "application/json", registry, repo });
    // The bundle is needed now: its compose file names the images.
    if (!o.store.has(layer.digest)) {
      const progress = o.onBundleProgress;
      resolveBytes += await o.store.pull(o.registry(registry), repo, layer, {
        signal: o.signal,
        // Bytes on their way only: the last write reaches the size before the blob is verified
        // and stored, which is said once, below.
        ...(progress ? { onProgress: (done: number) => done < layer.size && progress({ app: app.name, done, total: layer.size }) } : {}),
      });
      progress?.({ app: app.name, done: layer.size, total: layer.size });
    }
    let compose;
    try {
      const { name, text } = await composeFromBundle(o.store.path(layer.digest));
      compose = parseCompose(text, `${app.name}/${name}`);
    } catch (e) {
      return fail((e as Error).message);
    }
    const images: string[] = [];
    for (const svc of compose.services) {
      if (!svc.image) return fail(`service ${svc.name} has no image`);
      let iref;
      try {
        iref = parseReference(svc.image);
      } catch (e) {
        return fail((e as Error).message);
      }
      if (!iref.digest) return fail(`service ${svc.name} image ${svc.image} is not pinned by digest`);
      images.push(svc.image);
      const r = iref.registry;
      const rp = iref.repository;
      let top = await manifestBytes(o, r, rp, iref.digest, 4 << 20);
      resolveBytes += top.fetched;
      let p = parseManifest(top.bytes);
      if (p.kind === "index") {
        add({ digest: iref.digest, size: top.bytes.byteLength, kind: "index", mediaType: p.mediaType, registry: r, repo: rp });
        let pick: Descriptor;
        try {
          pick = selectPlatformManifest(p.index, platform);
        } catch (e) {
          if (e instanceof NoMatchingPlatformError) return fail(`image ${svc.image}: ${e.message}`);
          throw e;
        }
        top = await manifestBytes(o, r, rp, pick.digest, 4 << 20);
        resolveBytes += top.fetched;
        p = parseManifest(top.bytes);
        if (p.kind !== "manifest") return fail(`image ${svc.image}: nested index`);
        add({ digest: pick.digest, size: top.bytes.byteLength, kind: "manifest", mediaType: p.mediaType, registry: r, repo: rp });
      } else {
        add({ digest: iref.digest, size: top.bytes.byteLength, kind: "manifest", mediaType: p.mediaType, registry: r, repo: rp });
      }
      const m = p.manifest;
      if (o.platform) {
        // An image of one platform says it only in its config: one for another platform would fail at its start on the device.
        if (!o.store.has(m.config.digest)) resolveBytes += await o.store.pull(o.registry(r), rp, m.config, { signal: o.signal });
        const has = platformOfConfig(await o.store.readBytes(m.config.digest));
        if (has && !platformMatches(o.platform, has)) {
          return fail(`service ${svc.name} image ${svc.image} is for ${formatPlatform(has)}, not ${formatPlatform(o.platform)} (its config says so; build or pick the image for ${formatPlatform(o.platform)})`);
        }
      }
      add({ digest: m.config.digest, size: m.config.size, kind: "config", mediaType: m.config.mediaType, registry: r, repo: rp });
      for (const l of m.layers) add({ digest: l.digest, size: l.size, kind: "layer", mediaType: l.mediaType, registry: r, repo: rp });
    }
    out.push({ name: app.name, uri: app.uri, images });
  }
  return { apps: out, blobs: [...blobs.values()], resolveBytes };
}
