/**
 * Builds compose apps straight into a blob store, the way fioup's fetch
 * would leave them: busybox images (test/harness/images.ts), the bundle and
 * index from lib/compose, and the app manifest. No registry, no dockerd.
 *
 * @module
 */
import { cpSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { appManifest } from "../../lib/compose/app-manifest.ts";
import { createBundle } from "../../lib/compose/bundle.ts";
import { writeOciLayout, type BusyboxImageOptions } from "../harness/images.ts";
import { tempDir } from "../harness/tmp.ts";

export const REGISTRY = "127.0.0.1:5999";

/** A short random suffix so tests sharing one dockerd never collide on names. */
export const uniq = () => Math.random().toString(36).slice(2, 8);

const put = (store: string, digest: string, data: Uint8Array) => {
  const p = join(store, "blobs", "sha256", digest.slice(7));
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, data);
};

export interface FixtureApp {
  name: string;
  uri: string;
  /** service → pinned ref */
  images: Record<string, string>;
  bundleDigest: string;
  indexDigest: string;
  /** image config digests by service (= engine image IDs) */
  imageIds: Record<string, string>;
}

/**
 * Writes an app into `store`: one busybox image per entry of `images`, pinned
 * refs `<REGISTRY>/<ns>/<image key>@sha256:...`, and a bundle whose compose
 * text is `compose(pinnedRefs)` plus `files`.
 */
export async function storeApp(
  store: string,
  opts: {
    name: string;
    ns: string;
    images: Record<string, BusyboxImageOptions & { platforms?: string[] }>;
    compose: (refs: Record<string, string>) => string;
    files?: Record<string, string>;
  },
): Promise<FixtureApp> {
  const refs: Record<string, string> = {};
  const imageIds: Record<string, string> = {};
  for (const [key, img] of Object.entries(opts.images)) {
    const lay = await writeOciLayout(store, img);
    refs[key] = `${REGISTRY}/${opts.ns}/${key}@${lay.digest}`;
    imageIds[key] = lay.images[0]!.configDigest;
  }
  const appDir = await tempDir("fixture-app-");
  for (const [p, content] of Object.entries(opts.files ?? {})) {
    mkdirSync(dirname(join(appDir, p)), { recursive: true });
    writeFileSync(join(appDir, p), content);
  }
  const composeText = opts.compose(refs);
  writeFileSync(join(appDir, "docker-compose.yml"), composeText);
  const out = join(await tempDir("fixture-bundle-"), "bundle.tgz");
  const b = await createBundle(appDir, { composeFileName: "docker-compose.yml", composeText, outFile: out });
  const bundleBytes = new Uint8Array(await Bun.file(b.path).arrayBuffer());
  put(store, b.digest, bundleBytes);
  put(store, b.indexDigest, b.indexBytes);
  const m = appManifest({ digest: b.digest, size: b.size }, { digest: b.indexDigest, size: b.indexBytes.byteLength });
  put(store, m.digest, m.bytes);
  return { name: opts.name, uri: `${REGISTRY}/${opts.ns}/${opts.name}@${m.digest}`, images: refs, bundleDigest: b.digest, indexDigest: b.indexDigest, imageIds };
}

/** Copies a store (to test a store missing a blob without touching the original). */
export function copyStore(from: string, to: string): void {
  cpSync(from, to, { recursive: true });
}
