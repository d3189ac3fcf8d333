/**
 * The one reading of a comma-separated list a person wrote (a flag such as `--tag a,b`, a config
 * value such as `compose_apps = "a, b"`, a list of proxies): split on commas, each item trimmed,
 * empty items dropped, so `"a, b,,"` is `["a", "b"]` everywhere. An array (a TOML array, a
 * repeated flag) is read item by item the same way, so `["a,b", "c"]` is `["a", "b", "c"]`. A list
 * of tags ({@link tagList}) is read so too, each tag once, and a list in a file ({@link listFileText},
 * `/var/lmp/default-apps`) so too, one item a line as well as comma-separated.
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

/**
 * The one reading of a list of tags a person wrote (`gateway devices tag UUID a,b`, a `--tag` flag,
 * sota.toml's `pacman.tags`): {@link commaList}, each tag kept once where it first appears. A device
 * has a tag or not: `"a,a"` was stored as two tags.
 *
 * @example
 * ```ts
 * tagList("main, beta,main"); // ["main", "beta"]
 * ```
 */
export function tagList(value: string | readonly string[] | undefined): string[] {
  return [...new Set(commaList(value))];
}

/**
 * The one reading of a list a person wrote in a file (`/var/lmp/default-apps`): items one a line,
 * or several on a line separated by commas, read as {@link commaList}; a `#` starts a comment that
 * runs to the end of its line, commas and all (no item holds a `#`).
 *
 * @example
 * ```ts
 * listFileText("web\n db, api\n# not now, later\n"); // ["web", "db", "api"]
 * ```
 */
export function listFileText(text: string): string[] {
  return commaList(text.split("\n").map((line) => line.replace(/#.*/, "")));
}
