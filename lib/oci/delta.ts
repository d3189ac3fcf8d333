/**
 * Layer deltas: what the gateway advertises for a pair of layers of one image path, and how a
 * device turns a delta plus a layer it already holds into the layer it lacks.
 *
 * A delta is a zstd frame made with `zstd --patch-from=<old layer tar>` on the *uncompressed*
 * tars (the old tar is the dictionary, long-range matching finds what did not change). The
 * device decodes it in-process with node:zlib, so it needs no zstd binary. A delta is never
 * trusted by itself: the rebuilt tar must hash to the diff_id that the image config lists for
 * that layer (the config is pinned by the manifest digest, the manifest by the app, the app by
 * the signed target); anything else is refused and the caller fetches the full layer.
 *
 * Memory on the device: the old uncompressed layer is held whole as the dictionary, plus the
 * decoder's window (at most the larger of the two layers); the rebuilt layer streams to disk
 * while it is hashed. {@link MAX_DELTA_BASE_BYTES} bounds the first; the other two are bounded by
 * what is signed, never by the descriptor alone (a gateway's answer or a bundle's index.json):
 * {@link maxRebuiltBytes}.
 *
 * @module
 */
import { createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { constants, createGunzip, createZstdDecompress } from "node:zlib";
import { Type, type Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { Digester } from "./digest.ts";
import { layerCompression, sniffCompression } from "./media-types.ts";
import { readLimited, type RegistryClient } from "./registry-client.ts";
import { describeSchemaProblem } from "../api/schema-problem.ts";

/** Media type of a layer delta blob (a zstd frame to decode with the old layer's tar as dictionary). */
export const DELTA_MEDIA_TYPE = "application/vnd.fioup.layer.delta.v1.tar+zstd-patch";

/**
 * Smallest layer blob a device asks a delta for: below it the extra round trip, the gateway's
 * work and the rebuild cost more than the bytes they save.
 */
export const MIN_DELTA_LAYER_BYTES = 1 << 20;

/** Largest old layer (uncompressed) a device takes as a dictionary by default: it is held in memory. */
export const MAX_DELTA_BASE_BYTES = 512 * 1024 * 1024;

/**
 * How many times its blob a compressed layer may unpack to, for a delta to rebuild it, when the
 * signed target does not record its unpacked size. Layers of binaries and text unpack to 2 to 5
 * times; one that unpacks to more (zero-filled files) is cheap to fetch whole and costly to
 * rebuild (the decoder's window grows with the unpacked size), so it gets no delta.
 */
export const MAX_DELTA_UNPACK_RATIO = 16;

/**
 * The most a delta may rebuild for layer `to`, by what the signed target says: the unpacked size
 * it records for the layer (`uncompressedLayerSizes`, passed as `unpackedSize`), else the blob's
 * own size for an uncompressed layer, else {@link MAX_DELTA_UNPACK_RATIO} times it. The blob's
 * size and media type are pinned by its image manifest, which the target pins.
 */
export function maxRebuiltBytes(to: { size: number; mediaType?: string; unpackedSize?: number }): number {
  if (to.unpackedSize !== undefined) return to.unpackedSize;
  return layerCompression(to.mediaType) === "none" ? to.size : to.size * MAX_DELTA_UNPACK_RATIO;
}

/** The answer of `GET /v2/<name>/deltas?from=<layer digest>&to=<layer digest>`. */
export const DeltaDescriptor = Type.Object({
  mediaType: Type.Literal(DELTA_MEDIA_TYPE),
  /** The delta blob, served at `/v2/<name>/blobs/<digest>` like any blob. */
  digest: Type.String({ pattern: "^sha256:[a-f0-9]{64}$" }),
  size: Type.Integer({ minimum: 0 }),
  /** The layer (registry digest) whose uncompressed tar is the dictionary. */
  from: Type.String({ pattern: "^sha256:[a-f0-9]{64}$" }),
  /** The layer (registry digest) the delta rebuilds, uncompressed. */
  to: Type.String({ pattern: "^sha256:[a-f0-9]{64}$" }),
  /** Uncompressed sizes of both tars. */
  fromSize: Type.Integer({ minimum: 0 }),
  toSize: Type.Integer({ minimum: 0 }),
  /** log2 of the decoder window the frame needs. */
  windowLog: Type.Integer({ minimum: 10, maximum: 31 }),
});
export type DeltaDescriptor = Static<typeof DeltaDescriptor>;

/** Thrown when a delta descriptor from the registry does not have the documented shape. */
export class InvalidDeltaDescriptorError extends Error {
  override name = "InvalidDeltaDescriptorError";
}

/** Thrown when a delta cannot be applied (a frame that does not decode, a base too large). */
export class DeltaApplyError extends Error {
  override name = "DeltaApplyError";
}

/** Thrown when the rebuilt layer does not hash to the diff_id the image config pins. */
export class DeltaMismatchError extends Error {
  override name = "DeltaMismatchError";
  constructor(
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`Delta refused: the rebuilt layer hashes to ${actual}, the image config pins ${expected}`);
  }
}

/** Checks a parsed JSON value as a delta descriptor. @throws {InvalidDeltaDescriptorError} */
export function parseDeltaDescriptor(value: unknown): DeltaDescriptor {
  if (!Value.Check(DeltaDescriptor, value)) {
    throw new InvalidDeltaDescriptorError(`Invalid delta descriptor: ${describeSchemaProblem(DeltaDescriptor, value, "the descriptor")}`);
  }
  return value;
}

/** The smallest base worth a delta, as a share of the new layer's size (see {@link pickDeltaBase}). */
const MIN_BASE_SHARE = 0.2;

/**
 * The held layer to rebuild layer `index` of an image from: the layer at the same position in
 * the first of `earlier` (older images of the same registry and repository, most recent first)
 * whose layer there is held, else the largest held layer of those images. fioup's fetch step and
 * `gateway export` choose alike, so an offline bundle's delta is from the base a device asks for.
 *
 * A layer under a fifth of the new one's size is no base: the delta would carry at least the
 * four fifths the base lacks, over the 75% of the layer a gateway accepts, and the gateway would
 * have run zstd on both layers only to refuse.
 *
 * @example
 * ```ts
 * pickDeltaBase([v1Manifest], 2, v2Manifest.layers[2], (d) => store.has(d)); // v1's layer 2, if held
 * ```
 */
export function pickDeltaBase(
  earlier: readonly { layers: readonly { digest: string; size: number }[] }[],
  index: number,
  layer: { digest: string; size: number },
  held: (digest: string) => boolean,
): string | undefined {
  const ok = (x: { digest: string; size: number } | undefined): x is { digest: string; size: number } =>
    x !== undefined && x.digest !== layer.digest && x.size >= layer.size * MIN_BASE_SHARE && held(x.digest);
  const same = earlier.map((m) => m.layers[index]).find(ok);
  if (same) return same.digest;
  return earlier.flatMap((m) => m.layers).filter(ok).sort((a, b) => b.size - a.size)[0]?.digest;
}

/**
 * Asks a registry for the delta from layer `from` to layer `to` of `repo`
 * (`GET /v2/<repo>/deltas?from=&to=`) and checks the answer: a descriptor of that very pair,
 * smaller than the layer, rebuilding no more than {@link maxRebuiltBytes} of `to`. Used by
 * fioup's fetch step (and for a bundle's delta) and by `gateway export`, which so carries whole
 * a layer that devices would not rebuild.
 *
 * @example
 * ```ts
 * const desc = await requestDelta(reg, "main/app", heldLayer, { digest: layer.digest, size: layer.size });
 * ```
 * @throws {RegistryError} The registry has no delta for the pair (404 with its reason) or failed.
 * @throws {InvalidDeltaDescriptorError} An answer that is not a descriptor of that pair, not smaller than the layer, or rebuilding more than it may.
 */
export async function requestDelta(
  reg: RegistryClient,
  repo: string,
  from: string,
  to: { digest: string; size: number; mediaType?: string; unpackedSize?: number },
  o: { signal?: AbortSignal; onReceived?: (bytes: number) => void } = {},
): Promise<DeltaDescriptor> {
  const res = await reg.request("GET", `/v2/${repo}/deltas?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to.digest)}`, {
    scopes: [`repository:${repo}:pull`],
    ...(o.signal ? { signal: o.signal } : {}),
  });
  if (!res.ok) throw await reg.errorFrom(res, "get a delta");
  const body = await readLimited(res, 64 * 1024, "Delta descriptor");
  o.onReceived?.(body.byteLength);
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder().decode(body));
  } catch {
    throw new InvalidDeltaDescriptorError("Invalid delta descriptor: not JSON");
  }
  const desc = parseDeltaDescriptor(doc);
  if (desc.from !== from || desc.to !== to.digest) throw new InvalidDeltaDescriptorError("the registry answered a delta for another pair");
  if (desc.size >= to.size) throw new InvalidDeltaDescriptorError(`the delta (${desc.size} bytes) is not smaller than the layer (${to.size} bytes)`);
  const max = maxRebuiltBytes(to);
  if (desc.toSize > max) {
    const signed = to.unpackedSize !== undefined ? "the unpacked size the signed target records" : `what its ${to.size}-byte blob may unpack to`;
    throw new InvalidDeltaDescriptorError(`the delta claims to rebuild ${desc.toSize} bytes, more than the layer's ${max} (${signed})`);
  }
  return desc;
}

/**
 * The diff_id an image config lists for layer `index`: the sha256 a rebuilt layer must have.
 *
 * @throws {DeltaApplyError} A config that is not JSON or lists no diff_id there.
 */
export function configDiffId(config: Uint8Array, index: number): string {
  let diffId: unknown;
  try {
    diffId = (JSON.parse(new TextDecoder().decode(config)) as { rootfs?: { diff_ids?: unknown[] } }).rootfs?.diff_ids?.[index];
  } catch {
    throw new DeltaApplyError("the image config is not JSON");
  }
  if (typeof diffId !== "string") throw new DeltaApplyError(`the image config lists no diff_id for layer ${index}`);
  return diffId;
}

/** The window log a frame rebuilding `toSize` bytes from a `fromSize` dictionary needs (zstd minimum 10, CLI default 27). */
export function deltaWindowLog(fromSize: number, toSize: number): number {
  return Math.min(31, Math.max(27, Math.ceil(Math.log2(Math.max(fromSize, toSize, 1)))));
}

/**
 * A layer's uncompressed tar in memory, from its stored blob (gzip, zstd or plain), streamed
 * into one buffer of the expected size (the compressed blob is never held whole).
 *
 * @throws {DeltaApplyError} If it does not decode, or is not `size` bytes, or `size` is over `maxBytes`.
 */
export async function uncompressedLayer(blob: Blob, size: number, maxBytes = MAX_DELTA_BASE_BYTES): Promise<Uint8Array> {
  const fail = (why: string, cause?: unknown) => new DeltaApplyError(`Cannot use the old layer as a delta base: ${why}`, { cause });
  if (size > maxBytes) throw fail(`${size} bytes unpacked, more than ${maxBytes}`);
  const kind = sniffCompression(new Uint8Array(await blob.slice(0, 4).arrayBuffer()));
  const out = new Uint8Array(size);
  let at = 0;
  try {
    const src = Readable.fromWeb(blob.stream() as never);
    const decode = kind === "gzip" ? [createGunzip()] : kind === "zstd" ? [createZstdDecompress({ params: { [constants.ZSTD_d_windowLogMax]: 31 } } as never)] : [];
    await pipeline([
      src,
      ...decode,
      async function (chunks: AsyncIterable<Uint8Array>) {
        for await (const c of chunks) {
          if (at + c.byteLength > size) throw fail(`more than the ${size} bytes announced`);
          out.set(c, at);
          at += c.byteLength;
        }
      },
    ] as never);
  } catch (cause) {
    if (cause instanceof DeltaApplyError) throw cause;
    throw fail((cause as Error).message, cause);
  }
  if (at !== size) throw fail(`${at} bytes, not the ${size} announced`);
  return out;
}

/** Options of {@link applyLayerDelta}. */
export interface ApplyDeltaOptions {
  /** The old layer as stored (compressed or not): its uncompressed tar is the dictionary. */
  base: Blob;
  /** The delta blob (already checked against its own digest by the download). */
  delta: Blob;
  /** The diff_id the image config lists for the layer to rebuild. */
  diffId: string;
  /** Where to write the rebuilt tar (removed again on any failure). */
  out: string;
  /** The old layer's uncompressed size (the descriptor's `fromSize`). */
  baseSize: number;
  /** Largest old layer accepted as dictionary; default {@link MAX_DELTA_BASE_BYTES}. */
  maxBaseBytes?: number;
  /**
   * Largest rebuilt layer accepted (the descriptor's `toSize`, checked against
   * {@link maxRebuiltBytes}): the frame may not write more, nor ask a window for more. Without
   * it (tests, benchmarks on known deltas) nothing bounds either.
   */
  maxBytes?: number;
  /** Called as the rebuilt tar grows, with the bytes decoded so far. */
  onProgress?: (done: number) => void;
}

/**
 * Rebuilds a layer's uncompressed tar from a delta and the old layer, streaming it to `out`
 * while hashing it, and checks it against the pinned diff_id. The decoder accepts no window
 * beyond what rebuilding `maxBytes` from the base needs (a frame asking more is refused before it
 * writes), and the rebuild stops as soon as it writes more than `maxBytes`: disk and memory are
 * bounded by it, whatever the frame holds.
 *
 * @example
 * ```ts
 * await applyLayerDelta({ base: Bun.file(oldBlob), baseSize: desc.fromSize, delta: Bun.file(deltaPath), diffId: config.rootfs.diff_ids[i], out: tmp, maxBytes: desc.toSize });
 * ```
 * @throws {DeltaApplyError} If the base or the frame cannot be decoded, the frame asks a larger window, or the output grows past `maxBytes`.
 * @throws {DeltaMismatchError} If the rebuilt tar is not the pinned layer.
 */
export async function applyLayerDelta(o: ApplyDeltaOptions): Promise<{ digest: string; size: number }> {
  const dictionary = await uncompressedLayer(o.base, o.baseSize, o.maxBaseBytes);
  const hash = new Digester();
  const max = o.maxBytes ?? Number.MAX_SAFE_INTEGER;
  // The window the gateway asks zstd for (deltaWindowLog), and one more for zstd's own rounding.
  const windowLogMax = Math.min(31, deltaWindowLog(o.baseSize, max) + 1);
  try {
    await pipeline(
      Readable.fromWeb(o.delta.stream() as never),
      createZstdDecompress({ dictionary, params: { [constants.ZSTD_d_windowLogMax]: windowLogMax } } as never),
      async function* (src: AsyncIterable<Uint8Array>) {
        for await (const c of src) {
          hash.update(c);
          if (hash.size > max) throw new DeltaApplyError(`Delta refused: it rebuilds more than the ${max} bytes announced`);
          yield c;
          o.onProgress?.(hash.size);
        }
      },
      createWriteStream(o.out),
    );
  } catch (cause) {
    await rm(o.out, { force: true });
    if (cause instanceof DeltaApplyError) throw cause;
    throw new DeltaApplyError(`Cannot apply delta: ${(cause as Error).message}`, { cause });
  }
  const digest = hash.digest();
  if (digest !== o.diffId) {
    await rm(o.out, { force: true });
    throw new DeltaMismatchError(o.diffId, digest);
  }
  return { digest, size: hash.size };
}
