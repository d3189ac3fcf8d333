/**
 * The fetch step's layer deltas: for a layer the store lacks, find a layer of the same image
 * path (registry and repository) that the device holds, in its blob store or in its Docker
 * Engine (named by an earlier update, by its current or preloaded target, or by an offline
 * bundle's own delta), ask the gateway (or the bundle) for a delta between the two, and rebuild
 * the layer from it (lib/oci/delta.ts). The rebuilt tar must hash to the diff_id of the image config, which the
 * signed target pins through the app and the manifest, and may not grow past what the signed
 * target says the layer unpacks to (maxRebuiltBytes): the descriptor's sizes, from the gateway or
 * a bundle's index.json, set neither the memory check nor the disk the rebuild may take. Every
 * failure (no delta, a delta that does not download, decode or verify) returns false and the
 * caller fetches the full layer; from a bundle, which has no full layer, a full disk is thrown as
 * such (RebuildNoSpaceError).
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { freemem } from "node:os";
import { rm } from "node:fs/promises";
import type { DeviceBlobStore } from "../../lib/device/store.ts";
import { resolveApps, type AppBlob, type ResolvedApps } from "../../lib/device/resolve.ts";
import { BundleRegistry } from "../../lib/bundle/bundle-registry.ts";
import { applyLayerDelta, configDiffId, MIN_DELTA_LAYER_BYTES, pickDeltaBase, requestDelta, type DeltaDescriptor } from "../../lib/oci/delta.ts";
import { parseManifest, type ImageManifest } from "../../lib/oci/manifest.ts";
import type { RegistryClient } from "../../lib/oci/registry-client.ts";
import type { ReceivedAt } from "../../lib/oci/blob-store.ts";
import { zstdMaxWindow } from "../../lib/oci/zstd-window.ts";
import { recordedLayerSizes } from "../../lib/api/target.ts";
import type { Config } from "../config.ts";
import type { DeviceDb } from "../db.ts";
import { faultMidBlob } from "../fault.ts";
import { DockerEngine } from "../runtime/docker-engine.ts";
import { exportEngineLayer, type EngineLayer } from "./_engine-layer.ts";
import { preloadedTargetFile } from "./current-target.ts";
import { tryPlanOf, type UpdatePlan } from "./plan.ts";
import { sizeText } from "../../lib/cli/bytes.ts";
import { fsWhy, isNoSpace } from "../../lib/fs/why.ts";

/** A missing layer and the held layer to rebuild it from. */
export interface DeltaCandidate {
  /** The missing layer, with its unpacked size when the signed target records it. */
  layer: AppBlob & { unpackedSize?: number };
  /** The held layer of the same image path (registry digest). */
  base: string;
  /** The image config listing the layer's diff_id, and the layer's index there. */
  config: { digest: string; size: number; mediaType: string };
  index: number;
  /** Set when the blob store lacks the base and the Docker Engine holds it. */
  engine?: EngineBase;
}

/** One layer that came as a delta, as reported in the update's events. */
export interface DeltaReport {
  layer: string;
  from: string;
  delta: string;
  deltaBytes: number;
  layerBytes: number;
}

/** Image manifests of a plan that the store holds, parsed, with their image path. */
function storedImages(plan: Pick<ResolvedApps, "blobs">, store: DeviceBlobStore): { at: string; manifest: ImageManifest }[] {
  const out: { at: string; manifest: ImageManifest }[] = [];
  for (const b of plan.blobs) {
    if (b.kind !== "manifest" || !store.has(b.digest)) continue;
    try {
      const p = parseManifest(new Uint8Array(readFileSync(store.path(b.digest))));
      if (p.kind === "manifest") out.push({ at: `${b.registry}/${b.repo}`, manifest: p.manifest });
    } catch {
      // a manifest we cannot read offers no base
    }
  }
  return out;
}

/** Thrown by the registry of {@link heldPlan}: resolving the held apps must not fetch anything. */
class NotHeldError extends Error {
  override name = "NotHeldError";
}

/**
 * The apps of the device's current target (the last completed update's, or before the first
 * update the preloaded one) resolved from the store alone (the init step's walk, with no
 * registry), so their layers can be bases whatever the update history says: preload bakes blobs
 * into the store without any plan in the DB, and the DB keeps only the last 20 updates. Apps the
 * store cannot resolve (their manifests gone, outside preload's list) are left out.
 */
export async function heldPlan(cfg: Config, db: DeviceDb, store: DeviceBlobStore): Promise<ResolvedApps | undefined> {
  const t = db.currentTarget() ?? preloadedTargetFile(cfg);
  if (!t) return undefined;
  const offline = (host: string): never => {
    throw new NotHeldError(`${host}: not in the store`);
  };
  const plan: ResolvedApps = { apps: [], blobs: [], resolveBytes: 0 };
  for (const [name, { uri }] of Object.entries(t.entry.custom.docker_compose_apps)) {
    try {
      const r = await resolveApps([{ name, uri }], { registry: offline, store });
      plan.apps.push(...r.apps);
      plan.blobs.push(...r.blobs);
    } catch {
      // not (wholly) in the store: offers no base
    }
  }
  return plan;
}

/** Where a base layer the blob store lacks is held in the Docker Engine: its image (config digest), position and diff_id. */
export interface EngineBase {
  engine: DockerEngine;
  image: string;
  index: number;
  diffId: string;
}

/** The device's Docker Engine (fioup's config keeps the socket path without `unix://`), if its address is usable. */
function engineOf(cfg: Config): DockerEngine | undefined {
  try {
    return new DockerEngine(cfg.dockerHost ? `unix://${cfg.dockerHost}` : undefined);
  } catch {
    return undefined;
  }
}

/**
 * Layers of `images` the store lacks but the engine holds (its image ID is the config digest,
 * so an image it has by that ID has exactly the config's layers). Empty when there is no engine.
 */
async function engineHeld(engine: DockerEngine | undefined, images: ImageManifest[], store: DeviceBlobStore): Promise<Map<string, EngineBase>> {
  const out = new Map<string, EngineBase>();
  if (!engine) return out;
  const seen = new Set<string>();
  for (const m of images) {
    if (seen.has(m.config.digest) || m.layers.every((l) => store.has(l.digest))) continue;
    seen.add(m.config.digest);
    try {
      const img = await engine.inspectImage(m.config.digest);
      const diffIds = img?.RootFS?.Layers;
      if (!img || img.Id !== m.config.digest || diffIds?.length !== m.layers.length) continue;
      m.layers.forEach((l, index) => {
        if (!store.has(l.digest) && !out.has(l.digest)) out.set(l.digest, { engine, image: m.config.digest, index, diffId: diffIds[index]! });
      });
    } catch {
      // no engine (or it failed): the store is all there is
    }
  }
  return out;
}

/**
 * The engine's layers by diff_id (each with an image that holds it), from one listing of its
 * images: asked only when a bundle's base is in neither the store nor an image the device knows,
 * and then built once for all such layers of the update.
 */
async function engineLayersByDiffId(engine: DockerEngine | undefined): Promise<Map<string, EngineBase>> {
  const out = new Map<string, EngineBase>();
  if (!engine) return out;
  try {
    for (const s of await engine.listImages()) {
      const layers = (await engine.inspectImage(s.Id))?.RootFS?.Layers ?? [];
      layers.forEach((diffId, index) => {
        if (!out.has(diffId)) out.set(diffId, { engine, image: s.Id, index, diffId });
      });
    }
  } catch {
    // no engine
  }
  return out;
}


/**
 * For each missing layer of at least {@link MIN_DELTA_LAYER_BYTES}, the layer the device holds
 * (in its blob store, else in its Docker Engine) to ask a delta from: an offline bundle's own
 * base for that layer whenever the device holds it; otherwise the layer at the same position in
 * an earlier image of the same path, else the largest held layer of that path. Earlier images
 * are those of the device's recent updates and of its current target as the store holds it
 * ({@link heldPlan}). A base in the engine only is exported when used, and checked against its
 * diff_id (_engine-layer.ts).
 */
export async function deltaCandidates(
  db: DeviceDb,
  updateId: string,
  plan: UpdatePlan,
  store: DeviceBlobStore,
  missing: AppBlob[],
  cfg?: Config,
  registry?: (host: string) => RegistryClient,
): Promise<Map<string, DeltaCandidate>> {
  const want = new Set(missing.filter((b) => b.kind === "layer" && b.size >= MIN_DELTA_LAYER_BYTES).map((b) => b.digest));
  const out = new Map<string, DeltaCandidate>();
  if (!want.size) return out;
  const earlierPlans: Pick<ResolvedApps, "blobs">[] = db
    .listUpdates(20)
    .filter((u) => u.id !== updateId)
    .flatMap((u) => tryPlanOf(u) ?? []);
  const current = cfg && (await heldPlan(cfg, db, store));
  if (current) earlierPlans.push(current);
  const old = new Map<string, ImageManifest[]>();
  for (const p of earlierPlans) {
    for (const img of storedImages(p, store)) old.set(img.at, [...(old.get(img.at) ?? []), img.manifest]);
  }
  const recorded = recordedLayerSizes(db.getUpdate(updateId)?.target.entry.custom);
  const engine = cfg && engineOf(cfg);
  const inEngine = await engineHeld(engine, [...old.values()].flat(), store);
  let byDiffId: Promise<Map<string, EngineBase>> | undefined; // listed once, when first needed
  const held = (d: string) => store.has(d) || inEngine.has(d);
  const byDigest = new Map(missing.map((b) => [b.digest, b]));
  for (const img of storedImages(plan, store)) {
    const earlier = old.get(img.at) ?? [];
    for (const [index, l] of img.manifest.layers.entries()) {
      if (!want.has(l.digest) || out.has(l.digest)) continue;
      const unpackedSize = recorded.get(l.digest);
      const c = { layer: { ...byDigest.get(l.digest)!, ...(unpackedSize !== undefined ? { unpackedSize } : {}) }, config: img.manifest.config, index };
      // A bundle carries one delta per layer, from the layer of its `--from` version, and no whole
      // layer: its base is the one to use whenever the device holds it, whatever its history says.
      // A layer it carries whole has no delta to ask it for.
      const reg = registry?.(c.layer.registry);
      if (reg instanceof BundleRegistry) {
        const carried = reg.deltaBaseOf(l.digest);
        if (!carried) continue;
        const engineBase = store.has(carried.digest)
          ? undefined
          : (inEngine.get(carried.digest) ?? (carried.diffId ? (await (byDiffId ??= engineLayersByDiffId(engine))).get(carried.diffId) : undefined));
        if (store.has(carried.digest) || engineBase) out.set(l.digest, { ...c, base: carried.digest, ...(engineBase ? { engine: engineBase } : {}) });
        continue;
      }
      const base = pickDeltaBase(earlier, index, l, held);
      if (base) out.set(l.digest, { ...c, base, ...(store.has(base) ? {} : { engine: inEngine.get(base)! }) });
    }
  }
  return out;
}

/** The blob store's disk filled while a layer was rebuilt from an offline bundle's delta. */
export class RebuildNoSpaceError extends Error {
  override name = "RebuildNoSpaceError";
  constructor(layer: string, where: string, cause: unknown) {
    super(`Cannot rebuild layer ${layer} from the bundle's delta: ${fsWhy(cause)} (the blob store ${where}); free space there and apply the bundle again`, { cause });
  }
}

/** Options of {@link fetchLayerDelta}. */
export interface FetchDeltaOptions {
  signal?: AbortSignal;
  stallTimeoutMs?: number;
  /** Every received byte, as the blob store says it ({@link ReceivedAt}: where it goes, when it goes to a partial). */
  onReceived?: (n: number, at?: ReceivedAt) => void;
  /** Why a delta was not used (for the log); the caller then fetches the layer whole. */
  onRefused?: (why: string) => void;
  /** Notes for the log (a base exported from the engine, and what it cost). */
  onInfo?: (line: string) => void;
  /** Called as the layer is rebuilt, with its uncompressed bytes so far and in all (`toSize`). */
  onRebuilt?: (done: number, total: number) => void;
}

/** What a zstd decoder holds besides its window: its input and block buffers (128 KiB blocks), rounded up. */
const ZSTD_BLOCK_BUFFERS = 1024 * 1024;

/**
 * Tries to bring `c.layer` into the store as a delta. Returns what came, or undefined when
 * the layer must be fetched whole (the reason goes to `onRefused`). Aborts are rethrown.
 */
export async function fetchLayerDelta(reg: RegistryClient, store: DeviceBlobStore, c: DeltaCandidate, o: FetchDeltaOptions): Promise<DeltaReport | undefined> {
  const repo = c.layer.repo;
  let desc: DeltaDescriptor | undefined;
  const rebuilt = store.rebuildPath(c.layer.digest);
  // A bundle has no whole layer to fall back to: its delta is rebuilt even when memory is short.
  const carried = reg instanceof BundleRegistry && reg.deltaBaseOf(c.layer.digest)?.digest === c.base;
  const base = c.base;
  let lowMemory: string | undefined;
  let fromEngine: EngineLayer | undefined;
  try {
    // The config names the diff_id to verify against; it is small and needed anyway.
    await store.pull(reg, repo, c.config, { ...(o.signal ? { signal: o.signal } : {}), ...(o.onReceived ? { onReceived: o.onReceived } : {}) });
    const diffId = configDiffId(await store.read(c.config.digest), c.index);
    // A gateway makes a delta on the first request for it, which for a large layer takes seconds
    // in which no byte arrives: said before, so a terminal does not look stuck.
    if (!(reg instanceof BundleRegistry)) o.onInfo?.(`Layer ${c.layer.digest} (${sizeText(c.layer.size)}): asking the gateway for a delta from ${base}`);
    // Refused if it claims to rebuild more than the signed layer unpacks to (maxRebuiltBytes), so
    // toSize below, which sizes the memory check and bounds the rebuild, is bounded by what is signed.
    desc = await requestDelta(reg, repo, base, c.layer, { ...(o.signal ? { signal: o.signal } : {}), ...(o.onReceived ? { onReceived: o.onReceived } : {}) });
    // Rebuilding holds the old layer twice (ours and the decoder's copy) plus a window the size of
    // the new one (applyLayerDelta accepts no larger window); an old layer stored as zstd is first
    // decoded with the window its frames ask (up to 2 GiB, whatever the layer's size), counted on
    // top, but only as far as the decoder fills it: no more than the old layer unpacks to
    // (fromSize; a window is written front to back, its untouched pages take no memory), plus
    // zstd's block buffers. A base made with --long=31 from a pipe declares 2 GiB for any size.
    const declaredWindow = store.has(base) ? await zstdMaxWindow(await store.open(base)) : 0;
    const baseWindow = declaredWindow ? Math.min(declaredWindow, desc.fromSize) + ZSTD_BLOCK_BUFFERS : 0;
    const needs = 2 * desc.fromSize + desc.toSize + baseWindow;
    if (needs > freemem() / 2) {
      const window = baseWindow ? ` (${sizeText(baseWindow)} of it the window decoding the old layer's zstd fills)` : "";
      lowMemory = `rebuilding needs about ${sizeText(needs)} of memory${window}, more than half of the ${sizeText(freemem())} free`;
      // Online the layer comes whole instead; a bundle has no whole layer, so try the rebuild anyway.
      if (!carried) throw new Error(lowMemory);
    }
    const delta = desc;
    await store.pull(reg, repo, delta, {
      ...(o.signal ? { signal: o.signal } : {}),
      ...(o.onReceived ? { onReceived: o.onReceived } : {}),
      ...(o.stallTimeoutMs !== undefined ? { stallTimeoutMs: o.stallTimeoutMs } : {}),
      onProgress: (done) => faultMidBlob(delta.digest, done, delta.size), // power-cut tests (fioup/fault.ts)
    });
    // The base in the blob store, else exported from the engine and checked against its diff_id.
    if (c.engine && !store.has(base)) {
      const started = performance.now();
      fromEngine = await exportEngineLayer(c.engine.engine, c.engine.image, c.engine.index, c.engine.diffId, `${rebuilt}.save`, o.signal);
      o.onInfo?.(`Layer ${c.layer.digest}: delta base ${base} exported from the Docker Engine (${sizeText(fromEngine.size)} unpacked, checked against its diff_id) in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    }
    await applyLayerDelta({
      base: fromEngine?.tar ?? (await store.open(base)),
      baseSize: desc.fromSize,
      delta: await store.open(desc.digest),
      diffId,
      out: rebuilt,
      maxBytes: desc.toSize,
      onProgress: (done) => {
        faultMidBlob(c.layer.digest, done, delta.toSize); // a cut while the layer is rebuilt
        o.onRebuilt?.(done, delta.toSize);
      },
    });
    await store.putRebuiltLayer(c.layer.digest, rebuilt, diffId);
    return { layer: c.layer.digest, from: base, delta: desc.digest, deltaBytes: desc.size, layerBytes: c.layer.size };
  } catch (err) {
    await rm(rebuilt, { force: true });
    if (o.signal?.aborted) throw err;
    // A bundle has no whole layer to fetch instead: a full disk is said as one, not as a missing layer.
    const full = [err, (err as Error)?.cause].find(isNoSpace);
    if (carried && full) throw new RebuildNoSpaceError(c.layer.digest, store.root, full);
    const why = `${(err as Error).message ?? String(err)}`;
    o.onRefused?.(lowMemory && carried ? `${why}; low memory: ${lowMemory}` : why);
    return undefined;
  } finally {
    await fromEngine?.remove();
  }
}
