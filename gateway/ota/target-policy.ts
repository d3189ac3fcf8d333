/**
 * What the gateway agrees to sign into targets.json beyond the entry's schema.
 * A signed entry is a promise to every device, so nothing goes in that a
 * device cannot check or that reads differently on another parser: lengths
 * and numbers are safe integers (canonical JSON has no floats, and 1e300 is an
 * "integer" to JavaScript but not to a Go or C client), the sha256 hash is
 * present and well formed, and every app is pinned by manifest digest, so the
 * signed target names exact content rather than a tag someone can move.
 *
 * @module
 */
import type { TargetEntry } from "../../lib/api/target.ts";
import { tryParseReference } from "../../lib/oci/reference.ts";

const HASH_HEX: Record<string, RegExp> = { sha256: /^[0-9a-f]{64}$/, sha512: /^[0-9a-f]{128}$/ };
const SHA256_DIGEST = /^sha256:[0-9a-f]{64}$/;
const MAX_DEPTH = 16;

/** The first unsafe number, or a structure nested too deep, in a JSON value: its path and why. */
function unsafeValue(value: unknown, path: string, depth: number): string | undefined {
  if (typeof value === "number") return Number.isSafeInteger(value) ? undefined : `${path} is ${value}: numbers must be integers within ±(2^53-1)`;
  if (value === null || typeof value !== "object") return undefined;
  if (depth > MAX_DEPTH) return `${path} is nested more than ${MAX_DEPTH} levels deep`;
  for (const [k, v] of Object.entries(value)) {
    const why = unsafeValue(v, Array.isArray(value) ? `${path}[${k}]` : `${path}.${k}`, depth + 1);
    if (why) return why;
  }
  return undefined;
}

/** `<registry>/<repository>@sha256:<64 hex>`, no tag: the digest alone names the app. */
function isPinned(uri: unknown): boolean {
  const ref = typeof uri === "string" ? tryParseReference(uri) : undefined;
  return ref !== undefined && ref.tag === undefined && SHA256_DIGEST.test(ref.digest ?? "");
}

/**
 * Why a (schema-valid) target entry must not be signed, or `undefined` if it may.
 *
 * @example
 * ```ts
 * targetEntryProblem({ ...entry, length: 1e300 }); // "length is 1e+300: numbers must be integers within ±(2^53-1)"
 * targetEntryProblem({ ...entry, hashes: {} });    // "hashes.sha256 is missing"
 * ```
 */
export function targetEntryProblem(entry: TargetEntry): string | undefined {
  if (typeof entry.length !== "number" || !Number.isSafeInteger(entry.length) || entry.length < 0)
    return `length is ${String(entry.length)}: it must be a non-negative integer within 2^53-1`;
  const hashes = entry.hashes ?? {};
  if (!Object.hasOwn(hashes, "sha256")) return "hashes.sha256 is missing";
  for (const [alg, hex] of Object.entries(hashes)) {
    const re = HASH_HEX[alg];
    if (!re) return `hashes.${alg}: unknown hash algorithm (use sha256, optionally sha512)`;
    if (typeof hex !== "string" || !re.test(hex)) return `hashes.${alg} "${String(hex).slice(0, 80)}" is not ${alg === "sha256" ? 64 : 128} lower-case hex digits`;
  }
  for (const [app, ref] of Object.entries(entry.custom?.docker_compose_apps ?? {}))
    if (!isPinned(ref?.uri))
      return `custom.docker_compose_apps.${app}.uri "${String(ref?.uri).slice(0, 200)}" is not pinned by digest (<registry>/<repository>@sha256:<64 hex>)`;
  return unsafeValue(entry, "entry", 0)?.replace(/^entry\./, "");
}
