/**
 * The free-space check before the first byte of a fetch, on every filesystem
 * that will receive bytes: the blob store gets the missing blobs (rounded up
 * to whole blocks); Docker's data root gets each missing layer unpacked (its
 * real size: from the target, else the gzip trailer) plus the compressed
 * copy `docker load` stages there. Where both are one filesystem the needs
 * add up. Available = free − (100 − watermark)% of the filesystem.
 *
 * Docker's data root is checked again before the install loads images ({@link dockerRootNeed}
 * for the layers the engine lacks): a fetch that had nothing to fetch (the blobs in the store
 * from an earlier fetch or an offline bundle) checked nothing, and the engine's disk may have
 * filled since.
 *
 * @module
 */
import { existsSync, statSync } from "node:fs";
import { statfs } from "node:fs/promises";
import { dirname } from "node:path";
import type { BundleDelta } from "../../lib/bundle/format.ts";
import { BundleRegistry } from "../../lib/bundle/bundle-registry.ts";
import { recordedLayerSizes } from "../../lib/api/target.ts";
import type { AppBlob } from "../../lib/device/resolve.ts";
import { DeviceBlobStore } from "../../lib/device/store.ts";
import { maxRebuiltBytes } from "../../lib/oci/delta.ts";
import { layerCompression } from "../../lib/oci/media-types.ts";
import { sizeText } from "../../lib/cli/bytes.ts";
import { spaceOf } from "../../lib/fs/free.ts";
import type { UpdateRow } from "../db.ts";
import type { UpdateContext } from "./context.ts";

export class NoSpaceError extends Error {
  override name = "NoSpaceError";
  constructor(
    readonly required: number,
    readonly available: number,
    /** Where it does not fit ("the blob store /var/sota/reset-apps"...). */
    readonly where: string,
    watermark: number,
    /**
     * What the filesystem holds below the watermark when empty. An update larger than that can
     * never fit there (freeing space does not help); a smaller one may, once there is room.
     */
    readonly capacity = Infinity,
  ) {
    super(
      `Not enough space for the update in ${where}: need ${fmtBytes(required)}, available ${fmtBytes(Math.max(0, available))} ` +
        `(free space above the ${watermark}% storage watermark)` +
        (required > capacity ? `; it would not fit even on the empty filesystem (${fmtBytes(capacity)} below the watermark)` : ""),
    );
  }

  /** True when no amount of freed space makes the update fit (see `capacity`). */
  get neverFits(): boolean {
    return this.required > this.capacity;
  }
}

/** A space check's figures, exact: `1.5 KiB (1559 bytes)`, or `96 B` below a KiB. */
const fmtBytes = (n: number): string => sizeText(n, { exact: true });

/** Bytes that will land under `path`; `what` names it for the error message. */
export interface SpaceNeed {
  path: string;
  bytes: number;
  what: string;
}

export interface SpaceCheck {
  /** The needs that share this filesystem, e.g. "the blob store /x and Docker's data root /y". */
  where: string;
  required: number;
  available: number;
  blockSize: number;
}

/** The nearest existing ancestor of `path` (the store may not exist yet). */
function existing(path: string): string {
  let p = path;
  while (!existsSync(p) && dirname(p) !== p) p = dirname(p);
  return p;
}

/**
 * Measures each filesystem the needs fall on; throws for the first that lacks room.
 *
 * @throws {NoSpaceError} When `required > available` on one of them.
 */
export async function checkSpace(needs: SpaceNeed[], watermark: number): Promise<SpaceCheck[]> {
  const byDevice = new Map<number, { path: string; needs: SpaceNeed[] }>();
  for (const n of needs) {
    const p = existing(n.path);
    const dev = statSync(p).dev;
    const g = byDevice.get(dev) ?? { path: p, needs: [] };
    g.needs.push(n);
    byDevice.set(dev, g);
  }
  const out: SpaceCheck[] = [];
  for (const g of byDevice.values()) {
    // What an unprivileged writer may use: the reserved blocks stay out, as df's Avail leaves them.
    const { free, size: total, blockSize: bsize } = spaceOf(await statfs(g.path));
    const required = g.needs.reduce((s, n) => s + n.bytes, 0);
    const available = Math.floor(free - ((100 - watermark) / 100) * total);
    const where = g.needs.map((n) => `${n.what} ${n.path}`).join(" and ");
    if (required > available) throw new NoSpaceError(required, available, where, watermark, Math.floor((watermark / 100) * total));
    out.push({ where, required, available, blockSize: bsize });
  }
  return out;
}

/** `n` rounded up to whole 4 KiB blocks (what a file of n bytes takes on disk, near enough). */
export const onDisk = (n: number) => Math.ceil(n / 4096) * 4096;

/**
 * A layer's unpacked size when nothing better is known: an uncompressed layer is its size;
 * a compressed one is guessed at 2.5×. Callers prefer the target's recorded size or the
 * gzip trailer.
 */
export function unpackedEstimate(b: AppBlob): number {
  if (b.kind !== "layer") return 0;
  return layerCompression(b.mediaType) === "none" ? b.size : Math.ceil(b.size * 2.5);
}

/** The delta an offline bundle carries for layer `b` instead of the layer, if the update runs from one that does. */
export function bundleDeltaOf(ctx: UpdateContext, b: AppBlob): BundleDelta | undefined {
  const reg = ctx.bundle ? ctx.registry(b.registry) : undefined;
  return reg instanceof BundleRegistry ? reg.deltaOf(b.digest) : undefined;
}

/**
 * Each layer's unpacked size: recorded in the target, else the size a bundle's delta
 * rebuilds, else the device's stored copy says (an install of what was fetched earlier asks
 * nothing of the network), else its gzip trailer read from the registry, else a guess.
 */
async function unpackedSizes(ctx: UpdateContext, u: UpdateRow, layers: AppBlob[]): Promise<number[]> {
  const recorded = recordedLayerSizes(u.target.entry.custom);
  const store = new DeviceBlobStore(ctx.cfg.resetAppsRoot);
  return await Promise.all(
    layers.map(async (b) => {
      // A bundle's toSize is unsigned: at most what the signed layer may unpack to (a larger claim is refused unread).
      const claimed = bundleDeltaOf(ctx, b)?.toSize;
      const known = recorded.get(b.digest) ?? (claimed === undefined ? undefined : Math.min(claimed, maxRebuiltBytes(b)));
      if (known !== undefined) return known;
      const gzip = layerCompression(b.mediaType) === "gzip";
      const stored = await store.storedUnpackedSize(b.digest, gzip).catch(() => undefined);
      if (stored !== undefined) return stored >= b.size * 0.5 ? stored : stored + 2 ** 32;
      if (gzip) {
        const n = await Promise.resolve()
          .then(() => ctx.registry(b.registry).gzipUncompressedSize(b.repo, b.digest, b.size, { signal: ctx.signal }))
          .catch(() => undefined);
        // The trailer holds the size modulo 4 GiB: never believe it below the compressed size.
        if (n !== undefined) return n >= b.size * 0.5 ? n : n + 2 ** 32;
      }
      return unpackedEstimate(b);
    }),
  );
}

/**
 * What Docker's data root receives when the engine loads `staged`: each of those layers'
 * compressed copy, which `docker load` stages there, plus each layer of `unpack` unpacked
 * (those whose content the engine does not hold yet). The fetch counts its missing layers
 * for both; the install counts what it will load.
 */
export async function dockerRootNeed(ctx: UpdateContext, u: UpdateRow, dataRoot: string, staged: AppBlob[], unpack: AppBlob[]): Promise<SpaceNeed> {
  const unpacked = await unpackedSizes(ctx, u, unpack);
  const bytes = unpacked.reduce((s, n) => s + onDisk(n), 0) + staged.reduce((s, b) => s + onDisk(b.size), 0);
  return { path: dataRoot, what: "Docker's data root", bytes };
}
