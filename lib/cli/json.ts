/**
 * The JSON a CLI prints with `--format json`: one compact line, with data
 * nested deeper than a limit replaced by a marker. Device-supplied values
 * (system info, app states) can be arbitrarily deep; pretty-printing a
 * 40,000-deep value writes gigabytes of indentation, and walking it fully is
 * slow, so nothing below the limit is visited at all.
 *
 * @module
 */

/** Nesting the CLIs print in full; deeper values become {@link TRUNCATED}. */
export const MAX_OUTPUT_DEPTH = 64;
export const TRUNCATED = "[truncated: nested too deep]";

/**
 * A copy of `value` that is at most `maxDepth` levels deep, with `toJSON` applied as
 * JSON.stringify would.
 *
 * @example
 * ```ts
 * boundedJson({ a: { b: { c: 1 } } }, 2); // { a: { b: "[truncated: nested too deep]" } }
 * ```
 */
export function boundedJson(value: unknown, maxDepth = MAX_OUTPUT_DEPTH): unknown {
  const walk = (v: unknown, depth: number): unknown => {
    if (v !== null && typeof v === "object" && typeof (v as { toJSON?: unknown }).toJSON === "function")
      v = (v as { toJSON(): unknown }).toJSON();
    if (v === null || typeof v !== "object") return v;
    if (depth >= maxDepth) return TRUNCATED;
    if (Array.isArray(v)) return v.map((x) => walk(x, depth + 1));
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = walk(x, depth + 1);
    return out;
  };
  return walk(value, 0);
}

/**
 * One line of JSON, depth-bounded (see {@link boundedJson}).
 *
 * @example
 * ```ts
 * compactJson({ ok: true }); // '{"ok":true}'
 * ```
 */
export const compactJson = (value: unknown, maxDepth = MAX_OUTPUT_DEPTH): string => JSON.stringify(boundedJson(value, maxDepth));
