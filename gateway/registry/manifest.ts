/**
 * Validation of pushed manifests: the four media types we accept (OCI and Docker schema2,
 * image and index) and the references a manifest makes, which the store then checks exist
 * in the repository before accepting it.
 *
 * @module
 */
import { RegistryRequestError } from "./errors.ts";
import { isSha256Digest } from "./_names.ts";
import { BUNDLE_INDEX_DIGEST_ANNOTATION } from "../../lib/compose/app-format.ts";

export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
export const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
export const DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";
export const DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json";

const IMAGE_TYPES = new Set([OCI_MANIFEST, DOCKER_MANIFEST]);
const INDEX_TYPES = new Set([OCI_INDEX, DOCKER_MANIFEST_LIST]);

/** Layers that live elsewhere (Windows base layers): not required to be in the repository. */
const FOREIGN_LAYER = /(?:foreign|nondistributable)/;

export interface ParsedManifest {
  mediaType: string;
  /** Blobs (config and layers) that must be in the repository. */
  blobs: { digest: string; size: number }[];
  /** Every blob an image manifest references (referencedBlobs): `blobs`, and a bundle's index named only in an annotation. */
  referenced: string[];
  /** Child manifests (of an index) that must be in the repository. */
  manifests: { digest: string; size: number }[];
  subject?: string;
  artifactType?: string;
  annotations?: Record<string, string>;
}

const invalid = (why: string, detail?: unknown) => new RegistryRequestError(400, "MANIFEST_INVALID", `Invalid manifest: ${why}`, detail);

function descriptor(value: unknown, where: string): { mediaType: string; digest: string; size: number; urls?: unknown } {
  const d = value as Record<string, unknown> | null;
  if (!d || typeof d !== "object") throw invalid(`${where} is not a descriptor`);
  if (!isSha256Digest(d.digest)) throw invalid(`${where} has an invalid or non-sha256 digest`);
  if (typeof d.size !== "number" || !Number.isSafeInteger(d.size) || d.size < 0) throw invalid(`${where} has an invalid size`);
  if (typeof d.mediaType !== "string") throw invalid(`${where} has no mediaType`);
  return d as { mediaType: string; digest: string; size: number };
}

/**
 * Parses and checks a manifest body. The media type comes from the body's `mediaType`, else
 * from the request's Content-Type, else from its shape; the two must agree when both are set.
 *
 * @throws {RegistryRequestError} 400 MANIFEST_INVALID for anything malformed or of an unknown type.
 */
export function parseManifest(bytes: Uint8Array, contentType: string | undefined): ParsedManifest {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw invalid("not valid UTF-8 JSON");
  }
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) throw invalid("not a JSON object");
  if (doc.schemaVersion !== 2) throw invalid("schemaVersion must be 2");
  const header = contentType?.split(";")[0]?.trim().toLowerCase() || undefined;
  const bodyType = typeof doc.mediaType === "string" ? doc.mediaType : undefined;
  if (bodyType && header && header !== bodyType && header !== "application/json") {
    throw invalid(`Content-Type "${header}" does not match the manifest's mediaType "${bodyType}"`);
  }
  let mediaType = bodyType ?? (header && header !== "application/json" ? header : undefined);
  if (!mediaType) mediaType = Array.isArray(doc.manifests) ? OCI_INDEX : OCI_MANIFEST;

  const out: ParsedManifest = { mediaType, blobs: [], manifests: [], referenced: [] };
  if (IMAGE_TYPES.has(mediaType)) {
    const config = descriptor(doc.config, "config");
    if (!Array.isArray(doc.layers)) throw invalid("layers must be an array");
    out.blobs.push({ digest: config.digest, size: config.size });
    doc.layers.forEach((l, i) => {
      const d = descriptor(l, `layers[${i}]`);
      if (FOREIGN_LAYER.test(d.mediaType) && Array.isArray(d.urls) && d.urls.length > 0) return;
      out.blobs.push({ digest: d.digest, size: d.size });
    });
    out.referenced = referencedBlobs(doc);
    if (typeof doc.artifactType === "string") out.artifactType = doc.artifactType;
    else if (mediaType === OCI_MANIFEST) out.artifactType = config.mediaType;
  } else if (INDEX_TYPES.has(mediaType)) {
    if (!Array.isArray(doc.manifests)) throw invalid("manifests must be an array");
    doc.manifests.forEach((m, i) => {
      const d = descriptor(m, `manifests[${i}]`);
      out.manifests.push({ digest: d.digest, size: d.size });
    });
    if (typeof doc.artifactType === "string") out.artifactType = doc.artifactType;
  } else {
    throw new RegistryRequestError(400, "MANIFEST_INVALID", `Unsupported manifest media type "${mediaType}": expected OCI or Docker schema2 image manifest or index`);
  }
  if (doc.subject !== undefined) out.subject = descriptor(doc.subject, "subject").digest;
  if (doc.annotations && typeof doc.annotations === "object" && !Array.isArray(doc.annotations)) {
    out.annotations = doc.annotations as Record<string, string>;
  }
  return out;
}

/**
 * The sha256 digests of every blob an image manifest references, read leniently (gc reads what
 * is stored, whatever it is): its config and layers, and a compose app bundle's index, which its
 * layer names only in an annotation (lib/compose/app-format.ts) yet devices and export fetch by
 * digest, so it is as referenced as the layer.
 */
export function referencedBlobs(doc: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const d of [doc.config, ...(Array.isArray(doc.layers) ? doc.layers : [])]) {
    const ref = d as { digest?: unknown; annotations?: Record<string, unknown> } | undefined;
    for (const digest of [ref?.digest, ref?.annotations?.[BUNDLE_INDEX_DIGEST_ANNOTATION]]) if (isSha256Digest(digest)) out.push(digest as string);
  }
  return out;
}
