/**
 * The one reading of a comma-separated list a person wrote (a flag such as `--tag a,b`, a config
 * value such as `compose_apps = "a, b"`, a list of proxies): split on commas, each item trimmed,
 * empty items dropped, so `"a, b,,"` is `["a", "b"]` everywhere. An array (a TOML array, a
 * repeated flag) is read item by item the same way, so `["a,b", "c"]` is `["a", "b", "c"]`.
 *
 * @module
 */

/**
 * @example
 * ```ts
 * commaList(" web, db ,"); // ["web", "db"]
 * commaList(["a,b", "c"]); // ["a", "b", "c"]
 * commaList(undefined);    // []
 * ```
 */
export function commaList(value: string | readonly string[] | undefined): string[] {
  if (value === undefined) return [];
  const parts = typeof value === "string" ? value.split(",") : value.flatMap((v) => v.split(","));
  return parts.map((s) => s.trim()).filter((s) => s !== "");
}
