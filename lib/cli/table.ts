/**
 * The one plain-text table printer of the CLIs. Cells are made printable
 * (lib/cli/printable.ts), so a device-supplied value cannot add lines or
 * move the cursor; `null`/`undefined` and empty lists show as "-".
 *
 * @module
 */
import { printable } from "./printable.ts";

export interface TableOptions {
  /** A line of dashes under the head. */
  rule?: boolean;
  /** Shown instead of the table when there are no rows; default: the head alone. */
  empty?: string;
}

/** One cell as text: lists joined with commas, nothing as "-", control characters removed. */
export function cell(value: unknown): string {
  if (value === null || value === undefined) return "-";
  if (Array.isArray(value)) return value.length ? printable(value.map((v) => String(v)).join(",")) : "-";
  return printable(String(value));
}

/**
 * Columns padded to their widest cell, two spaces apart.
 *
 * @example
 * ```ts
 * table(["NAME", "TAGS"], [["kiosk", ["main", "beta"]]]);
 * // "NAME   TAGS\nkiosk  main,beta"
 * ```
 */
export function table(head: string[], rows: unknown[][], opts: TableOptions = {}): string {
  if (!rows.length && opts.empty !== undefined) return opts.empty;
  const text = rows.map((r) => head.map((_, i) => cell(r[i])));
  const widths = head.map((h, i) => Math.max(h.length, ...text.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return [line(head), ...(opts.rule ? [line(widths.map((w) => "-".repeat(w)))] : []), ...text.map(line)].join("\n");
}
