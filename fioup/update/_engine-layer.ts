/**
 * A layer the Docker Engine holds, as a delta base: for a device whose blob store no longer has
 * a layer (pruned, or preloaded straight into the engine) but whose engine still has the image.
 * The engine exports the image (`GET /images/{id}/get`, a `docker save` tar whose layers are
 * the uncompressed tars); the layer is taken at its position in the archive's manifest.json and
 * used only if its bytes hash to the diff_id the image's config lists for it. The engine is not
 * trusted for the layer it will help rebuild either: that one is still checked against the new
 * config's diff_id (lib/oci/delta.ts).
 *
 * Cost: the whole image is streamed to a scratch file beside the blob store (its unpacked size on
 * disk, removed afterwards) and the layer is read twice (hash, then as the dictionary).
 *
 * @module
 */
import { createWriteStream } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { digestBlob } from "../../lib/oci/digest.ts";
import { indexTar } from "../../lib/oci/_tar.ts";
import type { DockerEngine } from "../runtime/docker-engine.ts";

/** Thrown when the engine's copy of a layer cannot serve as a delta base. */
export class EngineLayerError extends Error {
  override name = "EngineLayerError";
}

/** A layer's uncompressed tar exported from the engine: a slice of a scratch file, and how to remove it. */
export interface EngineLayer {
  tar: Blob;
  size: number;
  remove(): Promise<void>;
}

/**
 * Exports layer `index` (diff_id `diffId`) of image `imageId` (its config digest) from the engine
 * into `scratch` and checks it against the diff_id.
 *
 * @example
 * ```ts
 * const base = await exportEngineLayer(engine, configDigest, 2, diffIds[2], `${store.rebuildPath(layer)}.save`);
 * try {
 *   await applyLayerDelta({ base: base.tar, baseSize: base.size, delta, diffId, out });
 * } finally {
 *   await base.remove();
 * }
 * ```
 * @throws {EngineLayerError} The engine has no such image or layer, or its bytes are not the diff_id.
 */
export async function exportEngineLayer(engine: DockerEngine, imageId: string, index: number, diffId: string, scratch: string, signal?: AbortSignal): Promise<EngineLayer> {
  const remove = () => rm(scratch, { force: true });
  try {
    await mkdir(dirname(scratch), { recursive: true });
    const body = await engine.saveImage(imageId, signal);
    await pipeline(Readable.fromWeb(body as never), createWriteStream(scratch), ...(signal ? [{ signal }] : []));
    const entries = await indexTar(scratch);
    const manifestEntry = entries.get("manifest.json");
    if (!manifestEntry) throw new EngineLayerError("the engine's export has no manifest.json");
    const file = Bun.file(scratch);
    const manifest = JSON.parse(await file.slice(manifestEntry.offset, manifestEntry.offset + manifestEntry.size).text()) as { Layers?: string[] }[];
    const name = manifest[0]?.Layers?.[index];
    const entry = name === undefined ? undefined : entries.get(name.replace(/^(\.\/)+/, ""));
    if (!entry) throw new EngineLayerError(`the engine's export of ${imageId} has no layer ${index}`);
    const tar = file.slice(entry.offset, entry.offset + entry.size);
    const { digest: actual } = await digestBlob(tar);
    if (actual !== diffId) throw new EngineLayerError(`the engine's layer ${index} of ${imageId} hashes to ${actual}, not its diff_id ${diffId}`);
    return { tar, size: entry.size, remove };
  } catch (cause) {
    await remove();
    if (signal?.aborted) throw cause;
    if (cause instanceof EngineLayerError) throw cause;
    throw new EngineLayerError(`Cannot export the layer from the engine: ${(cause as Error).message}`, { cause });
  }
}
