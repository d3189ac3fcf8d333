/**
 * Image references (`registry/repository:tag@digest`) with the distribution grammar and
 * Docker's defaults, so `nginx`, `localhost:5000/a/b:1` and `host/x@sha256:...` all resolve to
 * the same {registry, repository, tag, digest} shape the registry client needs.
 *
 * @module
 */
import { tryParseDigest } from "./digest.ts";

/** A parsed image reference. `registry` is `host[:port]`; docker.io for Docker Hub. */
export interface Reference {
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

/** The registry Docker assumes when a reference names none. */
export const DEFAULT_REGISTRY = "docker.io";

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_LABEL = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const DOMAIN = new RegExp(`^(?:${DOMAIN_LABEL}(?:\\.${DOMAIN_LABEL})*|\\[[0-9a-fA-F:.]+\\])(?::[0-9]+)?$`);
const TAG = /^[\w][\w.-]{0,127}$/;
const MAX_NAME_LENGTH = 255;

/**
 * Parses an image reference with Docker's defaults.
 *
 * @example
 * ```ts
 * parseReference("nginx"); // {registry: "docker.io", repository: "library/nginx", tag: "latest"}
 * parseReference("127.0.0.1:5000/main/app@sha256:" + "a".repeat(64)).digest; // "sha256:aaa..."
 * ```
 * @throws {SyntaxError} If the reference does not follow the grammar.
 */
export function parseReference(ref: string): Reference {
  const fail = (why: string): never => {
    throw new SyntaxError(`Invalid image reference "${String(ref).slice(0, 300)}": ${why}`);
  };
  if (typeof ref !== "string" || ref === "") return fail("empty");
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!tryParseDigest(digest)) fail(`bad digest "${digest}"`);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) fail(`bad tag "${tag}"`);
  }
  if (rest === "") fail("no repository");
  let registry = DEFAULT_REGISTRY;
  let repository = rest;
  const slash = rest.indexOf("/");
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    // distribution's rule: the first component is a host if it has a dot, a port, is
    // localhost, or has uppercase letters (which repository names cannot).
    if (first.includes(".") || first.includes(":") || first === "localhost" || first !== first.toLowerCase()) {
      if (!DOMAIN.test(first)) fail(`bad registry host "${first}"`);
      registry = first;
      repository = rest.slice(slash + 1);
    }
  }
  if (registry === "index.docker.io" || registry === "registry-1.docker.io") registry = DEFAULT_REGISTRY;
  if (repository.length > MAX_NAME_LENGTH) fail(`repository name longer than ${MAX_NAME_LENGTH} characters`);
  for (const c of repository.split("/")) {
    if (!COMPONENT.test(c)) fail(`bad repository path component "${c}" (lowercase letters, digits and . _ - separators)`);
  }
  if (registry === DEFAULT_REGISTRY && !repository.includes("/")) repository = `library/${repository}`;
  if (tag === undefined && digest === undefined) tag = "latest";
  const out: Reference = { registry, repository };
  if (tag !== undefined) out.tag = tag;
  if (digest !== undefined) out.digest = digest;
  return out;
}

/** Like {@link parseReference}, but returns `undefined` instead of throwing. */
export function tryParseReference(ref: string): Reference | undefined {
  try {
    return parseReference(ref);
  } catch {
    return undefined;
  }
}

/**
 * True when `host` names a registry as image references name it (`host[:port]`, e.g.
 * `127.0.0.1:5000`): a list of plain-HTTP registries is matched against references' registries,
 * so a value in any other form (a URL, a path) would never match and its registry stay on https.
 *
 * @example
 * ```ts
 * isRegistryHost("127.0.0.1:5000"); // true
 * isRegistryHost("http://127.0.0.1:5000"); // false
 * ```
 */
export function isRegistryHost(host: string): boolean {
  return tryParseReference(`${host}/x`)?.registry === host;
}

/** What {@link isRegistryHost} takes, for an error message. */
export const REGISTRY_HOST_RULE = "expected a registry host[:port] as image references name it (e.g. 127.0.0.1:5000)";

/**
 * Formats a reference back to `registry/repository[:tag][@digest]` (always with the registry).
 *
 * @example
 * ```ts
 * formatReference({registry: "docker.io", repository: "library/nginx", tag: "latest"}); // "docker.io/library/nginx:latest"
 * ```
 */
export function formatReference(ref: Reference): string {
  let s = `${ref.registry}/${ref.repository}`;
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/** The tag or digest to ask the registry for: the digest when there is one, since it is exact. */
export function referenceTarget(ref: Reference): string {
  return ref.digest ?? ref.tag ?? "latest";
}
