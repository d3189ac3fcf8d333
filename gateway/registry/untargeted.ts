/**
 * What `gateway registry gc --untargeted` may remove: the manifests no current target reaches.
 * Plain gc frees only blobs no manifest references, and every publish leaves manifests behind,
 * so a gateway whose targets are pruned (gateway/ota/retention.ts) kept all their content.
 *
 * The walk starts at every compose app the signed targets.json names (all hardware ids) and
 * follows what a device follows (lib/device/resolve.ts), but for every platform: app manifest →
 * its bundle, whose pinned compose file names the images → each image manifest, or an index and
 * all its platform manifests. Manifests younger than the grace period (by the time their revision
 * link was last written) are walked too: a publish in progress pushes its apps before it adds
 * their target, and an app it pushes may pin an image an older, untargeted version pushed. A
 * publish re-publishing such a version puts every manifest it reuses again, which rewrites the
 * link (gateway/publish/transfer.ts), so what it reuses counts as fresh too. Every manifest whose
 * subject is a kept one (a signature, an SBOM) is kept with it.
 *
 * Blobs are not tracked here: gc's mark and sweep keeps whatever the surviving manifests
 * reference. The walk reads the registry's storage directly (storage.ts), so it needs no running
 * gateway. It fails closed: a target naming content that is not there, or that cannot be read,
 * stops it, and nothing is removed.
 *
 * @module
 */
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { APP_ARTIFACT_TYPE, BUNDLE_INDEX_DIGEST_ANNOTATION, COMPOSE_FILE_NAMES, type BundleIndex } from "../../lib/compose/app-format.ts";
import { parseCompose } from "../../lib/compose/compose-file.ts";
import { extractBundle } from "../../lib/compose/extract.ts";
import { parseReference } from "../../lib/oci/reference.ts";
import { listDir } from "./_fs.ts";
import { parseManifest } from "./manifest.ts";
import type { RegistryStorage } from "./storage.ts";

/** A compose app a target names. */
export interface TargetApp {
  target: string;
  app: string;
  uri: string;
}

/** Content a target (or a fresh manifest) needs could not be read: nothing was removed. */
export class UnreachableContentError extends Error {
  override name = "UnreachableContentError";
  constructor(what: string, why: string) {
    super(
      `Cannot tell what the targets need: ${what}: ${why}. Nothing was removed; ` +
        "check that gc looks at the registry the gateway serves (gateway serve's --registry-dir, given to gc as --registry-dir), " +
        "then fix or remove the target (gateway targets remove NAME), or run gc without --untargeted",
    );
  }
}

/** The key of one manifest revision in one repository. */
export const revisionKey = (repo: string, hex: string) => `${repo}@sha256:${hex}`;

/**
 * The manifest revisions to keep: those the targets' apps reach, and those written within
 * `graceMs` (with what they reach). `repos` are the repositories the storage holds.
 *
 * @throws {UnreachableContentError} A manifest, bundle or compose file on the way is missing or unreadable.
 */
export async function reachedManifests(storage: RegistryStorage, repos: string[], apps: TargetApp[], graceMs: number, now = Date.now()): Promise<Set<string>> {
  const kept = new Set<string>();
  const scratch = await mkdtemp(join(tmpdir(), "registry-gc-bundle-"));
  try {
    const walk = async (repo: string, digest: string, from: string): Promise<void> => {
      const key = `${repo}@${digest}`;
      if (kept.has(key)) return;
      let bytes: Uint8Array;
      try {
        bytes = (await storage.getManifest(repo, digest)).bytes;
      } catch (e) {
        throw new UnreachableContentError(`${from} names ${repo}@${digest}`, (e as Error).message);
      }
      kept.add(key);
      let doc: Record<string, any>;
      let children: string[];
      try {
        doc = JSON.parse(new TextDecoder().decode(bytes));
        const parsed = parseManifest(bytes, undefined);
        children = parsed.manifests.map((m) => m.digest);
        if (parsed.artifactType === APP_ARTIFACT_TYPE) await walkApp(repo, digest, doc, from);
      } catch (e) {
        if (e instanceof UnreachableContentError) throw e;
        throw new UnreachableContentError(`${from}: the manifest ${repo}@${digest}`, (e as Error).message);
      }
      for (const child of children) await walk(repo, child, `${from} → ${repo}@${digest}`);
      for (const r of await storage.referrers(repo, digest)) await walk(repo, r.digest, `${from} (a referrer of ${repo}@${digest})`);
    };

    // The app's bundle holds its compose file, which pins the images it runs.
    const walkApp = async (repo: string, digest: string, doc: Record<string, any>, from: string): Promise<void> => {
      const layer = doc.layers?.[0];
      const indexDigest = layer?.annotations?.[BUNDLE_INDEX_DIGEST_ANNOTATION];
      if (typeof layer?.digest !== "string" || typeof indexDigest !== "string") throw new Error("it has no bundle layer with its index annotation");
      const index = JSON.parse(await readFile(storage.blobPath(indexDigest), "utf8")) as BundleIndex;
      const dest = join(scratch, digest.slice(7));
      await extractBundle({ bundle: storage.blobPath(layer.digest), index, dest });
      let compose;
      for (const name of COMPOSE_FILE_NAMES) {
        const text = await readFile(join(dest, name), "utf8").catch(() => undefined);
        if (text !== undefined) {
          compose = parseCompose(text, `${repo}@${digest}/${name}`);
          break;
        }
      }
      await rm(dest, { recursive: true, force: true });
      if (!compose) throw new Error(`its bundle has no ${COMPOSE_FILE_NAMES.join(" or ")}`);
      for (const svc of compose.services) {
        const ref = svc.image ? parseReference(svc.image) : undefined;
        if (!ref?.digest) throw new Error(`service ${svc.name}'s image ${svc.image ?? "(none)"} is not pinned by digest`);
        await walk(ref.repository, ref.digest, `${from} → service ${svc.name}`);
      }
    };

    for (const a of apps) {
      let ref;
      try {
        ref = parseReference(a.uri);
      } catch (e) {
        throw new UnreachableContentError(`target ${a.target} app ${a.app} (${a.uri})`, (e as Error).message);
      }
      if (!ref.digest) throw new UnreachableContentError(`target ${a.target} app ${a.app} (${a.uri})`, "the URI is not pinned by digest");
      await walk(ref.repository, ref.digest, `target ${a.target} app ${a.app}`);
    }
    for (const repo of repos) {
      const dir = storage.revisionsDir(repo);
      for (const hex of await listDir(dir)) {
        if (!/^[a-f0-9]{64}$/.test(hex)) continue;
        const st = await stat(join(dir, hex)).catch(() => undefined);
        if (st && now - st.mtimeMs < graceMs) await walk(repo, `sha256:${hex}`, `${repo}@sha256:${hex}, pushed within the grace period`);
      }
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  return kept;
}
