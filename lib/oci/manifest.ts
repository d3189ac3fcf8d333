/**
 * Manifest and index documents: their types and a checked parse, so code that walks an image
 * (pull, push, copy) never trusts a field it has not validated.
 *
 * @module
 */
import { tryParseDigest } from "./digest.ts";
import { isIndexMediaType, isManifestMediaType, MediaType } from "./media-types.ts";

/** A content descriptor: what a manifest says about one blob or child manifest. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: PlatformSpec;
  artifactType?: string;
  urls?: string[];
}

/** The platform object of an index entry or an image config. */
export interface PlatformSpec {
  os: string;
  architecture: string;
  variant?: string;
  "os.version"?: string;
  "os.features"?: string[];
}

/** An image manifest (OCI or Docker schema2). */
export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations?: Record<string, string>;
}

/** An image index (OCI) or manifest list (Docker). */
export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

/** The result of {@link parseManifest}: which kind it is, plus the document. */
export type ParsedManifest =
  | { kind: "manifest"; mediaType: string; manifest: ImageManifest }
  | { kind: "index"; mediaType: string; index: ImageIndex };

/** Thrown when manifest bytes are not a valid image manifest or index. */
export class InvalidManifestError extends Error {
  override name = "InvalidManifestError";
}

function checkDescriptor(d: unknown, where: string): Descriptor {
  const bad = (why: string): never => {
    throw new InvalidManifestError(`Invalid manifest: ${where} ${why}`);
  };
  if (!d || typeof d !== "object") return bad("is not an object");
  const o = d as Record<string, unknown>;
  if (typeof o.mediaType !== "string") bad("has no mediaType");
  if (typeof o.digest !== "string" || !tryParseDigest(o.digest)) bad(`has a bad digest ${JSON.stringify(o.digest)}`);
  if (typeof o.size !== "number" || !Number.isSafeInteger(o.size) || o.size < 0) bad(`has a bad size ${JSON.stringify(o.size)}`);
  return o as unknown as Descriptor;
}

/**
 * Parses and validates manifest bytes. The media type comes from the document's own
 * `mediaType` field, else from the `Content-Type` the registry sent, else from its shape.
 *
 * @example
 * ```ts
 * const p = parseManifest(bytes, res.headers.get("content-type") ?? undefined);
 * if (p.kind === "index") p.index.manifests.length;
 * ```
 * @throws {InvalidManifestError} If the bytes are not JSON or miss required fields.
 */
export function parseManifest(bytes: Uint8Array | string, contentType?: string): ParsedManifest {
  let doc: unknown;
  try {
    doc = JSON.parse(typeof bytes === "string" ? bytes : new TextDecoder().decode(bytes));
  } catch (err) {
    throw new InvalidManifestError(`Invalid manifest: not JSON (${(err as Error).message})`);
  }
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) throw new InvalidManifestError("Invalid manifest: not a JSON object");
  const o = doc as Record<string, unknown>;
  if (o.schemaVersion !== 2) throw new InvalidManifestError(`Invalid manifest: unsupported schemaVersion ${JSON.stringify(o.schemaVersion)}`);
  const ct = contentType?.split(";")[0]?.trim();
  let mediaType = typeof o.mediaType === "string" ? o.mediaType : undefined;
  if (!mediaType && (isIndexMediaType(ct) || isManifestMediaType(ct))) mediaType = ct;
  if (!mediaType) mediaType = Array.isArray(o.manifests) ? MediaType.OciIndex : MediaType.OciManifest;
  if (isIndexMediaType(mediaType)) {
    if (!Array.isArray(o.manifests)) throw new InvalidManifestError("Invalid manifest: index has no manifests array");
    o.manifests.forEach((m, i) => checkDescriptor(m, `manifests[${i}]`));
    return { kind: "index", mediaType, index: o as unknown as ImageIndex };
  }
  if (isManifestMediaType(mediaType)) {
    checkDescriptor(o.config, "config");
    if (!Array.isArray(o.layers)) throw new InvalidManifestError("Invalid manifest: no layers array");
    o.layers.forEach((l, i) => checkDescriptor(l, `layers[${i}]`));
    return { kind: "manifest", mediaType, manifest: o as unknown as ImageManifest };
  }
  throw new InvalidManifestError(`Invalid manifest: unsupported media type ${mediaType}`);
}
