/**
 * A size a person wrote, in a flag or a config value, as bytes: the reverse of bytes.ts
 * `sizeText`. Binary units, as mkfs, truncate and docker read them (`512M` is 512 MiB), with or
 * without a trailing `B` or `iB`; a plain number is bytes.
 *
 * @module
 */

const UNITS: Record<string, number> = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/**
 * @returns The bytes, or undefined for anything else (a unit it does not know, a fraction, a
 * size past what a number holds exactly); the caller says what it expected.
 *
 * @example
 * ```ts
 * parseSize("512M"); // 536870912
 * parseSize("2GiB"); // 2147483648
 * parseSize("1048576"); // 1048576
 * parseSize("1.5G"); // undefined
 * ```
 */
export function parseSize(value: string): number | undefined {
  const m = /^(\d+)\s*(?:([kmgt])(?:i?b)?|b)?$/i.exec(value.trim());
  if (!m) return undefined;
  const n = Number(m[1]) * UNITS[(m[2] ?? "").toLowerCase()]!;
  return Number.isSafeInteger(n) ? n : undefined;
}
