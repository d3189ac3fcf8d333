/**
 * A byte count as people read it in progress lines and summaries, one way for every binary:
 * binary units with one decimal (`2.3 MiB`), whole bytes below a KiB (`96 B`, never `0.0 MB`).
 *
 * @module
 */

/**
 * @example
 * ```ts
 * sizeText(96); // "96 B"
 * sizeText(1559); // "1.5 KiB"
 * sizeText(1559, { exact: true }); // "1.5 KiB (1559 bytes)"
 * ```
 */
export function sizeText(n: number, opts: { exact?: boolean } = {}): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  if (!i) return `${n} B`;
  // The exact count only where asked and where the unit rounds it.
  return `${v.toFixed(1)} ${units[i]}${opts.exact ? ` (${n} bytes)` : ""}`;
}
