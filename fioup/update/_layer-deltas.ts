/**
 * The fetch step's layer deltas: for a layer the store lacks, find a layer of the same image
 * path (registry and repository) that an earlier update brought (or, before the device's first
 * update, that preload baked into its store) and the store still holds, ask the gateway for a
 * delta between the two, and rebuild the layer from it
 * (lib/oci/delta.ts). The rebuilt tar must hash to the diff_id of the image config, which the
 * signed target pins through the app and the manifest; every failure (no delta, a delta that
 * does not download, decode or verify) returns false and the caller fetches the full layer.
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
import type { Config } from "../config.ts";
import type { DeviceDb } from "../db.ts";
import { faultMidBlob } from "../fault.ts";
import { preloadedTargetFile } from "./current-target.ts";
import { tryPlanOf, type UpdatePlan } from "./plan.ts";

/** A missing layer and the held layer to rebuild it from. */
export interface DeltaCandidate {
  layer: AppBlob;
  /** The held layer of the same image path (registry digest). */
  base: string;
  /** The image config listing the layer's diff_id, and the layer's index there. */
  config: { digest: string; size: number; mediaType: string };
  index: number;
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

/** Thrown by the registry of {@link preloadedPlan}: resolving the preloaded apps must not fetch anything. */
class NotPreloadedError extends Error {
  override name = "NotPreloadedError";
}

/**
 * Before the device's first update, its current target is the preloaded one, whose blobs
 * preload put in the store without any plan in the DB: that target's apps resolved from the
 * store alone (the same walk as the init step, with no registry), so their layers can be bases.
 * Apps the store cannot resolve (outside preload's list) are left out. Undefined once the device
 * has completed an update (its plan is in the DB) or if it was not preloaded.
 */
export async function preloadedPlan(cfg: Config, db: DeviceDb, store: DeviceBlobStore): Promise<ResolvedApps | undefined> {
  if (db.currentTarget()) return undefined;
  const t = preloadedTargetFile(cfg);
  if (!t) return undefined;
  const apps = Object.entries(t.entry.custom.docker_compose_apps).filter(([name]) => !t.apps || t.apps.includes(name));
  const offline = (host: string): never => {
    throw new NotPreloadedError(`${host}: not in the preloaded store`);
  };
  const plan: ResolvedApps = { apps: [], blobs: [], resolveBytes: 0 };
  for (const [name, { uri }] of apps) {
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

/**
 * For each missing layer of at least {@link MIN_DELTA_LAYER_BYTES}, the held layer of the same image path to ask a delta from: the layer
 * at the same position in an earlier image of that path if the store holds it, else the
 * largest held layer of that path. Earlier images are those of the device's recent updates,
 * and, given `cfg`, before its first update those of the preloaded target ({@link preloadedPlan}).
 */
export async function deltaCandidates(db: DeviceDb, updateId: string, plan: UpdatePlan, store: DeviceBlobStore, missing: AppBlob[], cfg?: Config): Promise<Map<string, DeltaCandidate>> {
  const want = new Set(missing.filter((b) => b.kind === "layer" && b.size >= MIN_DELTA_LAYER_BYTES).map((b) => b.digest));
  const out = new Map<string, DeltaCandidate>();
  if (!want.size) return out;
  const earlierPlans: Pick<ResolvedApps, "blobs">[] = db
    .listUpdates(20)
    .filter((u) => u.id !== updateId)
    .flatMap((u) => tryPlanOf(u) ?? []);
  const preloaded = cfg && (await preloadedPlan(cfg, db, store));
  if (preloaded) earlierPlans.push(preloaded);
  const old = new Map<string, ImageManifest[]>();
  for (const p of earlierPlans) {
    for (const img of storedImages(p, store)) old.set(img.at, [...(old.get(img.at) ?? []), img.manifest]);
  }
  const byDigest = new Map(missing.map((b) => [b.digest, b]));
  for (const img of storedImages(plan, store)) {
    const earlier = old.get(img.at) ?? [];
    img.manifest.layers.forEach((l, index) => {
      if (!want.has(l.digest) || out.has(l.digest)) return;
      const base = pickDeltaBase(earlier, index, l.digest, (d) => store.has(d));
      if (base) out.set(l.digest, { layer: byDigest.get(l.digest)!, base, config: img.manifest.config, index });
    });
  }
  return out;
}

/** Options of {@link fetchLayerDelta}. */
export interface FetchDeltaOptions {
  signal?: AbortSignal;
  stallTimeoutMs?: number;
  onReceived?: (n: number) => void;
  /** Why a delta was not used (for the log); the caller then fetches the layer whole. */
  onRefused?: (why: string) => void;
}

/**
 * Tries to bring `c.layer` into the store as a delta. Returns what came, or undefined when
 * the layer must be fetched whole (the reason goes to `onRefused`). Aborts are rethrown.
 */
export async function fetchLayerDelta(reg: RegistryClient, store: DeviceBlobStore, c: DeltaCandidate, o: FetchDeltaOptions): Promise<DeltaReport | undefined> {
  const repo = c.layer.repo;
  let desc: DeltaDescriptor | undefined;
  const rebuilt = store.rebuildPath(c.layer.digest);
  // A bundle carries one delta per layer, from the layer of its `--from` version, and no whole
  // layer: its base is the one to use whenever the store holds it, whatever this device's history
  // suggests (e.g. a newer update that was rolled back brought another layer of that path).
  const carried = reg instanceof BundleRegistry ? reg.deltaBaseOf(c.layer.digest) : undefined;
  const base = carried !== undefined && store.has(carried) ? carried : c.base;
  let lowMemory: string | undefined;
  try {
    // The config names the diff_id to verify against; it is small and needed anyway.
    await store.pull(reg, repo, c.config, { ...(o.signal ? { signal: o.signal } : {}), ...(o.onReceived ? { onReceived: o.onReceived } : {}) });
    const diffId = configDiffId(await store.read(c.config.digest), c.index);
    desc = await requestDelta(reg, repo, base, c.layer, { ...(o.signal ? { signal: o.signal } : {}), ...(o.onReceived ? { onReceived: o.onReceived } : {}) });
    // Rebuilding holds the old layer twice (ours and the decoder's copy) plus a window the size of the new one.
    const needs = 2 * desc.fromSize + desc.toSize;
    if (needs > freemem() / 2) {
      lowMemory = `rebuilding needs about ${needs >> 20} MiB of memory, more than half of the ${freemem() >> 20} MiB free`;
      // Online the layer comes whole instead; a bundle has no whole layer, so try the rebuild anyway.
      if (carried === undefined) throw new Error(lowMemory);
    }
    const delta = desc;
    await store.pull(reg, repo, delta, {
      ...(o.signal ? { signal: o.signal } : {}),
      ...(o.onReceived ? { onReceived: o.onReceived } : {}),
      ...(o.stallTimeoutMs !== undefined ? { stallTimeoutMs: o.stallTimeoutMs } : {}),
      onProgress: (done) => faultMidBlob(delta.digest, done, delta.size), // power-cut tests (fioup/fault.ts)
    });
    await applyLayerDelta({
      base: await store.open(base),
      baseSize: desc.fromSize,
      delta: await store.open(desc.digest),
      diffId,
      out: rebuilt,
      maxBytes: desc.toSize,
      onProgress: (done) => faultMidBlob(c.layer.digest, done, delta.toSize), // a cut while the layer is rebuilt
    });
    await store.putRebuiltLayer(c.layer.digest, rebuilt, diffId);
    return { layer: c.layer.digest, from: base, delta: desc.digest, deltaBytes: desc.size, layerBytes: c.layer.size };
  } catch (err) {
    await rm(rebuilt, { force: true });
    if (o.signal?.aborted) throw err;
    const why = `${(err as Error).message ?? String(err)}`;
    o.onRefused?.(lowMemory && carried !== undefined ? `${why}; low memory: ${lowMemory}` : why);
    return undefined;
  }
}
