/**
 * Syntax checks for what comes in a registry URL: repository names, tags and digests, per the
 * OCI distribution spec. Private to gateway/registry (lib/oci has the client-side versions).
 *
 * @module
 */
import { RegistryRequestError } from "./errors.ts";

const NAME_COMPONENT = "[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*";
const NAME_RE = new RegExp(`^${NAME_COMPONENT}(?:/${NAME_COMPONENT})*$`);
const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;
const ANY_DIGEST_RE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

/** True for a valid repository name such as `main/httpd` (at most 255 characters). */
export function isRepositoryName(name: string): boolean {
  return name.length <= 255 && NAME_RE.test(name);
}

/** Throws NAME_INVALID unless `name` is a valid repository name. */
export function checkRepositoryName(name: string): string {
  if (!isRepositoryName(name)) throw new RegistryRequestError(400, "NAME_INVALID", `Invalid repository name "${name.slice(0, 300)}": must match the OCI name grammar`);
  return name;
}

export function isTag(ref: string): boolean {
  return TAG_RE.test(ref);
}

/** True if `ref` looks like a digest (any algorithm); see {@link checkDigest} for the ones we store. */
export function looksLikeDigest(ref: string): boolean {
  return ref.includes(":") && ANY_DIGEST_RE.test(ref);
}

/**
 * Returns the hex part of a sha256 digest; throws DIGEST_INVALID for anything else (this
 * registry stores sha256 content only).
 */
export function checkDigest(digest: string | undefined | null): string {
  if (!digest || !DIGEST_RE.test(digest)) {
    throw new RegistryRequestError(400, "DIGEST_INVALID", `Invalid digest "${String(digest).slice(0, 200)}": expected sha256:<64 lowercase hex>`);
  }
  return digest.slice(7);
}

export function isSha256Digest(digest: unknown): boolean {
  return typeof digest === "string" && DIGEST_RE.test(digest);
}
