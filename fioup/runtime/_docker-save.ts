/**
 * Streams a docker-save tar (legacy `manifest.json` layout, which is what
 * `POST /images/load` on Docker 20.10 accepts) straight from the blob store,
 * so loading an image never copies its layers to a temp file first.
 *
 * @module
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import tar from "tar-stream";
import { blobPath } from "./_store.ts";

/** One image of a docker-save tar: blobs by digest, and the tags to give it. */
export interface SaveImage {
  configDigest: string;
  layerDigests: string[];
  repoTags: string[];
}

const entryName = (digest: string) => `blobs/sha256/${digest.slice("sha256:".length)}`;

/**
 * Returns a stream of a docker-save tar holding `images`, reading blobs from
 * `storeRoot` as the consumer pulls (backpressure all the way to the file).
 * A missing blob errors the stream.
 */
export function dockerSaveTar(storeRoot: string, images: SaveImage[]): ReadableStream<Uint8Array> {
  const pack = tar.pack();
  const mtime = new Date(0);

  const writeBlob = async (digest: string) => {
    const path = blobPath(storeRoot, digest);
    const { size } = await stat(path);
    await new Promise<void>((resolve, reject) => {
      const sink = pack.entry({ name: entryName(digest), size, mode: 0o644, mtime }, (err) => (err ? reject(err) : resolve()));
      const src = createReadStream(path);
      src.on("error", (err) => sink.destroy(err));
      sink.on("error", (err: Error) => {
        src.destroy();
        reject(err);
      });
      src.on("data", (chunk) => {
        if (!sink.write(chunk as Buffer)) {
          src.pause();
          sink.once("drain", () => src.resume());
        }
      });
      src.on("end", () => sink.end(undefined));
    });
  };

  const produce = async () => {
    const done = new Set<string>();
    for (const img of images) {
      for (const d of [img.configDigest, ...img.layerDigests]) {
        if (done.has(d)) continue;
        done.add(d);
        await writeBlob(d);
      }
    }
    const manifest = images.map((img) => ({
      Config: entryName(img.configDigest),
      RepoTags: img.repoTags,
      Layers: img.layerDigests.map(entryName),
    }));
    const body = Buffer.from(JSON.stringify(manifest));
    await new Promise<void>((resolve, reject) => {
      pack.entry({ name: "manifest.json", size: body.length, mode: 0o644, mtime }, body, (err) => (err ? reject(err) : resolve()));
    });
    pack.finalize();
  };

  const it = pack[Symbol.asyncIterator]();
  let started = false;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!started) {
        started = true;
        produce().catch((err) => pack.destroy(err));
      }
      try {
        const { value, done } = await it.next();
        if (done) controller.close();
        else {
          const b = value as Buffer;
          controller.enqueue(new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
        }
      } catch (err) {
        controller.error(err);
      }
    },
    cancel(reason) {
      pack.destroy(reason instanceof Error ? reason : new Error(String(reason)));
    },
  });
}
