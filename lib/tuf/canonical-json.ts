/**
 * Canonical JSON as TUF signs it (the OLPC dialect `@tufjs/models` uses):
 * object keys sorted by UTF-16 code unit, no whitespace, integers only, and
 * only `\` and `"` escaped in strings. Signatures and key ids are computed
 * over these bytes, so they must match the verifier's encoder exactly.
 *
 * @module
 */

/** Thrown for values canonical JSON cannot encode (floats, undefined, functions...). */
export class CanonicalJsonError extends Error {
  override name = "CanonicalJsonError";
  constructor(path: string, why: string) {
    super(`Cannot encode ${path || "value"} as canonical JSON: ${why}`);
  }
}

const escapeString = (s: string) => `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;

function encode(value: unknown, path: string, out: string[]): void {
  if (typeof value === "string") out.push(escapeString(value));
  else if (typeof value === "boolean" || value === null) out.push(String(value));
  else if (typeof value === "number") {
    if (!Number.isInteger(value)) throw new CanonicalJsonError(path, `${value} is not an integer`);
    out.push(JSON.stringify(value));
  } else if (Array.isArray(value)) {
    out.push("[");
    value.forEach((v, i) => {
      if (i > 0) out.push(",");
      encode(v, `${path}[${i}]`, out);
    });
    out.push("]");
  } else if (typeof value === "object") {
    out.push("{");
    const keys = Object.keys(value as object).sort();
    keys.forEach((k, i) => {
      if (i > 0) out.push(",");
      out.push(escapeString(k), ":");
      encode((value as Record<string, unknown>)[k], `${path}.${k}`, out);
    });
    out.push("}");
  } else {
    throw new CanonicalJsonError(path, `${typeof value} is not a JSON value`);
  }
}

/**
 * Encodes a JSON value as TUF canonical JSON.
 *
 * @example
 * ```ts
 * canonicalJson({ b: 1, a: "x\"y" }); // '{"a":"x\\"y","b":1}'
 * ```
 * @throws {CanonicalJsonError} If the value holds a float, undefined or a non-JSON type.
 */
export function canonicalJson(value: unknown): string {
  const out: string[] = [];
  encode(value, "", out);
  return out.join("");
}

/** {@link canonicalJson} as UTF-8 bytes: what gets signed. */
export const canonicalBytes = (value: unknown): Uint8Array => new TextEncoder().encode(canonicalJson(value));
