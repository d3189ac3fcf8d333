/**
 * The free-space check before the first byte of a fetch (SPEC §4):
 * required = missing blob bytes rounded up to whole blocks + the unpacked size
 * of missing layers; available = free − (100 − watermark)% of the filesystem.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { statfs } from "node:fs/promises";
import { dirname } from "node:path";
import type { AppBlob } from "../../lib/device/resolve.ts";
import { layerCompression } from "../../lib/oci/media-types.ts";

export class NoSpaceError extends Error {
  override name = "NoSpaceError";
  constructor(
    readonly required: number,
    readonly available: number,
    path: string,
    watermark: number,
  ) {
    super(
      `Not enough space to fetch the update in ${path}: need ${fmtBytes(required)}, available ${fmtBytes(Math.max(0, available))} ` +
        `(free space above the ${watermark}% storage watermark)`,
    );
  }
}

/** `1.5 KiB (1559 bytes)`, or `96 B` below a KiB. */
export function fmtBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  // The exact count only where the unit rounds it.
  return i ? `${v.toFixed(1)} ${units[i]} (${n} bytes)` : `${n} B`;
}

export interface SpaceCheck {
  required: number;
  available: number;
  blockSize: number;
}

/** Measures; throws NoSpaceError when `required > available`. */
export async function checkSpace(path: string, blobSizes: number[], unpacked: number, watermark: number): Promise<SpaceCheck> {
  let p = path;
  while (!existsSync(p) && dirname(p) !== p) p = dirname(p);
  const fs = await statfs(p);
  const bsize = Number(fs.bsize) || 4096;
  const required = blobSizes.reduce((s, n) => s + Math.ceil(n / bsize) * bsize, 0) + unpacked;
  const total = Number(fs.blocks) * bsize;
  const free = Number(fs.bavail) * bsize;
  const available = Math.floor(free - ((100 - watermark) / 100) * total);
  if (required > available) throw new NoSpaceError(required, available, path, watermark);
  return { required, available, blockSize: bsize };
}

/** A rough unpacked size of a layer in the engine (gzip/zstd layers expand about 2.5×). */
export function unpackedEstimate(b: AppBlob): number {
  if (b.kind !== "layer") return 0;
  return layerCompression(b.mediaType) === "none" ? b.size : Math.ceil(b.size * 2.5);
}
