/**
 * Turning a `docker save` tarball into registry content: the config blob
 * (whose digest is the image ID docker reports), each layer gzip-compressed
 * with fixed settings (so the same image always gives the same digests), and
 * an OCI image manifest. Handles both the legacy layout (`<id>/layer.tar`)
 * and the OCI-style one newer engines write (`blobs/sha256/<hex>`).
 *
 * @module
 */
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { dirname, join, normalize } from "node:path";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import tar from "tar-stream";
import { digestFile } from "../../lib/oci/digest.ts";
import { MediaType } from "../../lib/oci/media-types.ts";

export class DockerSaveError extends Error {
  override name = "DockerSaveError";
}

/** An image ready to push: blobs on disk and the manifest bytes. */
export interface SavedImage {
  config: { digest: string; size: number; path: string; mediaType: string };
  layers: { digest: string; size: number; path: string; mediaType: string }[];
  manifest: Uint8Array;
  manifestDigest: string;
  mediaType: string;
}

async function extractTar(tarPath: string, dir: string): Promise<void> {
  const ex = tar.extract();
  const done = (async () => {
    for await (const entry of ex) {
      const name = normalize(entry.header.name);
      if (name.startsWith("..") || name.startsWith("/")) throw new DockerSaveError(`Invalid docker save archive ${tarPath}: unsafe entry ${entry.header.name}`);
      if (entry.header.type === "file") {
        const dest = join(dir, name);
        await mkdir(dirname(dest), { recursive: true });
        await pipeline(entry, createWriteStream(dest));
      } else {
        entry.resume();
      }
    }
  })();
  await Promise.all([pipeline(createReadStream(tarPath), ex), done]);
}

async function isGzip(path: string): Promise<boolean> {
  const f = Bun.file(path).slice(0, 2);
  const b = new Uint8Array(await f.arrayBuffer());
  return b[0] === 0x1f && b[1] === 0x8b;
}

/**
 * Reads a `docker save` tar of ONE image (extracting into `workDir`) and
 * prepares its OCI manifest.
 *
 * @throws {DockerSaveError} If the archive has no manifest.json or not exactly one image.
 */
export async function readDockerSave(tarPath: string, workDir: string): Promise<SavedImage> {
  await mkdir(workDir, { recursive: true });
  await extractTar(tarPath, workDir);
  let entries: { Config?: string; Layers?: string[] }[];
  try {
    entries = JSON.parse(await readFile(join(workDir, "manifest.json"), "utf8"));
  } catch (cause) {
    throw new DockerSaveError(`Invalid docker save archive ${tarPath}: no readable manifest.json`, { cause });
  }
  if (!Array.isArray(entries) || entries.length !== 1 || !entries[0]?.Config || !Array.isArray(entries[0].Layers)) {
    throw new DockerSaveError(`Invalid docker save archive ${tarPath}: expected exactly one image in manifest.json`);
  }
  const configPath = join(workDir, normalize(entries[0].Config));
  const config = { ...(await digestFile(configPath)), path: configPath, mediaType: MediaType.OciConfig };
  const layers: SavedImage["layers"] = [];
  for (const [i, rel] of entries[0].Layers.entries()) {
    const src = join(workDir, normalize(rel));
    let path = src;
    if (!(await isGzip(src))) {
      path = join(workDir, `layer-${i}.tar.gz`);
      await pipeline(createReadStream(src), createGzip({ level: 6, memLevel: 8, windowBits: 15, strategy: 0 }), createWriteStream(path));
    }
    layers.push({ ...(await digestFile(path)), path, mediaType: MediaType.OciLayerGzip });
  }
  const manifest = new TextEncoder().encode(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OciManifest,
      config: { mediaType: config.mediaType, digest: config.digest, size: config.size },
      layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
    }),
  );
  const manifestDigest = "sha256:" + new Bun.CryptoHasher("sha256").update(manifest).digest("hex");
  return { config, layers, manifest, manifestDigest, mediaType: MediaType.OciManifest };
}
