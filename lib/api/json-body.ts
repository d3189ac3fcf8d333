/**
 * The one reader of JSON request bodies: it caps the size while reading and
 * the nesting depth before parsing, so a hostile body costs at most one pass
 * over its bytes (a 100,000-deep array is refused after 33 bytes, not after
 * seconds of parsing and a stack overflow somewhere later).
 *
 * @module
 */

/** Bodies above this many bytes are refused unless the caller sets its own limit. */
export const MAX_JSON_BYTES = 8 * 1024 * 1024;
/** Arrays and objects nested deeper than this are refused. */
export const MAX_JSON_DEPTH = 32;

/** A request body that is not acceptable JSON; `status` is the HTTP answer (400, or 413 when too large). */
export class JsonBodyError extends Error {
  override name = "JsonBodyError";
  constructor(
    message: string,
    readonly status: 400 | 413 = 400,
  ) {
    super(message);
  }
}

export interface JsonLimits {
  /** Default {@link MAX_JSON_BYTES}. */
  maxBytes?: number;
  /** Default {@link MAX_JSON_DEPTH}. */
  maxDepth?: number;
}

/**
 * The nesting depth of JSON text in UTF-8, stopping as soon as it passes `maxDepth`.
 * Strings are skipped (brackets in them do not count); the text need not be valid JSON.
 *
 * @example
 * ```ts
 * jsonDepth(new TextEncoder().encode('{"a":[1,"]"]}'), 32); // 2
 * ```
 */
export function jsonDepth(bytes: Uint8Array, maxDepth: number): number {
  let depth = 0;
  let deepest = 0;
  const n = bytes.byteLength;
  for (let i = 0; i < n; i++) {
    const b = bytes[i]!;
    if (b === 0x22) {
      // a string: find its closing quote, skipping escapes
      for (i++; i < n; i++) {
        const s = bytes[i]!;
        if (s === 0x5c) i++;
        else if (s === 0x22) break;
      }
    } else if (b === 0x5b || b === 0x7b) {
      if (++depth > deepest) {
        deepest = depth;
        if (deepest > maxDepth) return deepest;
      }
    } else if (b === 0x5d || b === 0x7d) depth--;
  }
  return deepest;
}

/**
 * Parses JSON bytes after checking their size and nesting depth.
 *
 * @example
 * ```ts
 * parseJsonBytes(new TextEncoder().encode('{"a":1}')); // { a: 1 }
 * ```
 * @throws {JsonBodyError} Too large (413), too deeply nested, or not JSON (400).
 */
export function parseJsonBytes(bytes: Uint8Array, limits: JsonLimits = {}): unknown {
  const maxBytes = limits.maxBytes ?? MAX_JSON_BYTES;
  const maxDepth = limits.maxDepth ?? MAX_JSON_DEPTH;
  if (bytes.byteLength > maxBytes) throw tooLarge(maxBytes);
  if (jsonDepth(bytes, maxDepth) > maxDepth) throw new JsonBodyError(`Invalid JSON body: nested deeper than ${maxDepth} levels`);
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (err) {
    throw new JsonBodyError(`Invalid JSON body: ${(err as Error).message}`);
  }
}

/**
 * Reads a request's body (refusing it as soon as it passes `maxBytes`, declared or sent) and
 * parses it with {@link parseJsonBytes}.
 *
 * @example
 * ```ts
 * const value = await readJsonBody(request, { maxBytes: 256 * 1024 });
 * ```
 * @throws {JsonBodyError} Too large (413), too deeply nested, empty or not JSON (400).
 */
export async function readJsonBody(request: Request, limits: JsonLimits = {}): Promise<unknown> {
  const maxBytes = limits.maxBytes ?? MAX_JSON_BYTES;
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > maxBytes) throw tooLarge(maxBytes);
  if (!request.body) throw new JsonBodyError("Invalid JSON body: the request has no body");
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => {});
      throw tooLarge(maxBytes);
    }
    chunks.push(value);
  }
  const bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
  return parseJsonBytes(bytes, limits);
}

const tooLarge = (maxBytes: number) => new JsonBodyError(`Request body too large: the limit is ${maxBytes} bytes`, 413);
