/**
 * The offline bundle: everything a device needs to update to one target without a network,
 * in one directory (a USB stick, a tarball unpacked anywhere). The layout is an OCI image
 * layout with TUF metadata beside it:
 *
 * ```
 * DIR/oci-layout            {"imageLayoutVersion":"1.0.0"}
 * DIR/index.json            an OCI image index (the app manifests, named by app) with a `bundle` member
 * DIR/tuf/<N>.root.json     every root version from 1 (so a device on any older root walks the chain)
 * DIR/tuf/timestamp.json <N>.snapshot.json <N>.targets.json   as the gateway serves them under /repo/
 * DIR/blobs/sha256/<hex>    app manifests, compose bundles and indexes, image manifests, configs, layers,
 *                           and layer deltas (a bundle made --from may carry a layer as a delta from a layer of that version)
 * ```
 *
 * Nothing here is trusted because it is in the bundle: the device verifies the TUF metadata
 * against its own trusted root, takes the target from the verified targets.json, and checks
 * every blob against the digests that target pins (through the manifests). index.json only
 * says which target the bundle was made for and what it holds. It is written last, so a
 * bundle whose copy was cut short has none and is refused.
 *
 * @module
 */
import { stat } from "node:fs/promises";
import { join } from "node:path";
import { Type, type Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { AppBlob } from "../device/resolve.ts";
import { DeltaDescriptor } from "../oci/delta.ts";
import { MediaType } from "../oci/media-types.ts";
import { InvalidBundleError } from "./errors.ts";
import { describeSchemaProblem } from "../api/schema-problem.ts";
import { TargetVersion } from "../api/target.ts";

/** The format version of a bundle of whole blobs (index.json's `bundle.format`). */
export const BUNDLE_FORMAT = 1;

/**
 * The format version of a bundle that carries layer deltas: a reader of format 1 only refuses it
 * (it could not rebuild those layers), while this reader takes both.
 */
export const BUNDLE_FORMAT_DELTAS = 2;

/**
 * A layer the bundle carries as a delta instead of whole: the delta's descriptor (the answer of
 * the registry's deltas endpoint: delta digest and size, `from` and `to` layer digests, both
 * unpacked sizes) and where the target's apps name the layer.
 */
export const BundleDelta = Type.Object({
  ...DeltaDescriptor.properties,
  registry: Type.String(),
  repo: Type.String(),
  /**
   * The diff_id of the base layer `from` (sha256 of its uncompressed tar), so a device that holds
   * it only in its Docker Engine finds it there; absent in bundles from before it was written.
   */
  fromDiffId: Type.Optional(Type.String({ pattern: "^sha256:[a-f0-9]{64}$" })),
});
export type BundleDelta = Static<typeof BundleDelta>;

/** Where the TUF metadata sits inside a bundle. */
export const BUNDLE_TUF_DIR = "tuf";

/** The largest index.json a reader accepts. */
export const MAX_BUNDLE_INDEX_BYTES = 4 << 20;

/** The metadata files a bundle may hold (the names the gateway serves under /repo/). */
export const BUNDLE_TUF_FILE = /^(?:[1-9][0-9]{0,9}\.)?(?:root|timestamp|snapshot|targets)\.json$/;

/** What index.json says about the bundle (unsigned: a hint, checked against the signed metadata). */
export const BundleInfo = Type.Object({
  format: Type.Union([Type.Literal(BUNDLE_FORMAT), Type.Literal(BUNDLE_FORMAT_DELTAS)]),
  /** The target name the bundle updates to, e.g. `amd64-linux-42`. */
  target: Type.String({ minLength: 1, maxLength: 256 }),
  version: TargetVersion,
  hwid: Type.String({ minLength: 1, maxLength: 256 }),
  /** `os/arch[/variant]` of the images in the bundle. */
  platform: Type.String({ maxLength: 64 }),
  /** The version the bundle was made against: blobs that target already had are left out. */
  from: Type.Optional(TargetVersion),
  createdAt: Type.String({ maxLength: 64 }),
  /** Files under tuf/. */
  tuf: Type.Array(Type.String({ pattern: BUNDLE_TUF_FILE.source }), { maxItems: 1000 }),
  /** Every blob under blobs/, and where the target's apps name it. */
  blobs: Type.Array(AppBlob, { maxItems: 100_000 }),
  /**
   * Layers carried as deltas (format 2, only with `from`): their files are under blobs/ too, and
   * the layers they rebuild (`to`) are not. The device rebuilds each from the layer `from` it holds.
   */
  deltas: Type.Optional(Type.Array(BundleDelta, { maxItems: 100_000 })),
  /** Total bytes of `blobs` and `deltas`. */
  bytes: Type.Integer({ minimum: 0 }),
});
export type BundleInfo = Static<typeof BundleInfo>;

/** A bundle's index.json: an OCI image index plus the `bundle` member. */
export const BundleIndex = Type.Object(
  {
    schemaVersion: Type.Literal(2),
    mediaType: Type.Literal(MediaType.OciIndex),
    manifests: Type.Array(
      Type.Object(
        {
          mediaType: Type.String(),
          digest: Type.String(),
          size: Type.Integer({ minimum: 0 }),
          annotations: Type.Optional(Type.Record(Type.String(), Type.String())),
        },
        { additionalProperties: true },
      ),
      { maxItems: 10_000 },
    ),
    annotations: Type.Optional(Type.Record(Type.String(), Type.String())),
    bundle: BundleInfo,
  },
  { additionalProperties: true },
);
export type BundleIndex = Static<typeof BundleIndex>;

export { InvalidBundleError }; // declared once, in ./errors.ts

/** An opened bundle: its directory and what its index.json says. */
export interface Bundle {
  dir: string;
  index: BundleIndex;
  /** sha256 of index.json: names this bundle (watch mode remembers the ones it applied). */
  id: string;
}

/**
 * Opens a bundle: reads and checks index.json and that every file it lists is there (sizes
 * included). Verifies nothing cryptographically: that is the TUF client's and the blob
 * store's job on the device.
 *
 * @example
 * ```ts
 * const b = await openBundle("/media/usb/bundle");
 * b.index.bundle.target; // "amd64-linux-42"
 * ```
 * @throws {InvalidBundleError} No index.json (an unfinished copy), a malformed one, another format, or a listed file missing.
 */
export async function openBundle(dir: string): Promise<Bundle> {
  const file = Bun.file(join(dir, "index.json"));
  if (!(await file.exists())) {
    const st = await stat(dir).catch(() => undefined);
    const why = !st ? "no such directory" : !st.isDirectory() ? "it is a file; give the bundle's directory" : "no index.json (not a bundle, or its copy is unfinished)";
    throw new InvalidBundleError(`Cannot open the bundle ${dir}: ${why}`);
  }
  if (file.size > MAX_BUNDLE_INDEX_BYTES) throw new InvalidBundleError(`Cannot open the bundle ${dir}: index.json is over ${MAX_BUNDLE_INDEX_BYTES} bytes`);
  const bytes = new Uint8Array(await file.arrayBuffer());
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new InvalidBundleError(`Cannot open the bundle ${dir}: index.json is not JSON (${(e as Error).message})`);
  }
  const format = (doc as { bundle?: { format?: unknown } })?.bundle?.format;
  if (format !== undefined && format !== BUNDLE_FORMAT && format !== BUNDLE_FORMAT_DELTAS) {
    throw new InvalidBundleError(`Cannot open the bundle ${dir}: format ${JSON.stringify(format)}, this reader knows ${BUNDLE_FORMAT} and ${BUNDLE_FORMAT_DELTAS}`);
  }
  if (!Value.Check(BundleIndex, doc)) {
    throw new InvalidBundleError(`Cannot open the bundle ${dir}: index.json is not a bundle index (${describeSchemaProblem(BundleIndex, doc, "the index")})`);
  }
  for (const f of doc.bundle.tuf) {
    if (!(await Bun.file(join(dir, BUNDLE_TUF_DIR, f)).exists())) throw new InvalidBundleError(`Cannot open the bundle ${dir}: ${BUNDLE_TUF_DIR}/${f} is missing`);
  }
  const deltas = doc.bundle.deltas ?? [];
  if (deltas.length && (doc.bundle.format !== BUNDLE_FORMAT_DELTAS || doc.bundle.from === undefined)) {
    throw new InvalidBundleError(`Cannot open the bundle ${dir}: it lists layer deltas but is not a format ${BUNDLE_FORMAT_DELTAS} bundle made --from a version`);
  }
  for (const b of [...doc.bundle.blobs, ...deltas]) {
    const p = bundleBlobPath(dir, b.digest);
    const f = Bun.file(p);
    if (!(await f.exists())) throw new InvalidBundleError(`Cannot open the bundle ${dir}: blob ${b.digest} is missing`);
    if (f.size !== b.size) throw new InvalidBundleError(`Cannot open the bundle ${dir}: blob ${b.digest} has ${f.size} bytes, index.json says ${b.size}`);
  }
  return { dir, index: doc, id: new Bun.CryptoHasher("sha256").update(bytes).digest("hex") };
}

/** Where a blob of the bundle lives. @throws {InvalidBundleError} For a value that is not `<algorithm>:<hex>`. */
export function bundleBlobPath(dir: string, digest: string): string {
  const m = /^(sha256|sha512):([a-f0-9]{64,128})$/.exec(digest);
  if (!m) throw new InvalidBundleError(`Not a blob digest: ${JSON.stringify(digest)}`);
  return join(dir, "blobs", m[1]!, m[2]!);
}
