/**
 * Variable interpolation as docker compose does it, applied once at publish
 * time so the compose file a device receives is exactly what runs there:
 * `${VAR}`, `$VAR`, `${VAR:-default}` (unset or empty), `${VAR-default}`
 * (unset), `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, `${VAR+alt}` and
 * `$$` for a literal `$`. Defaults may themselves hold variables
 * (`${A:-${B}}`). Values come from the publishing environment, then from the
 * `.env` file beside the compose file (the environment wins, as in compose).
 *
 * Unlike compose, a variable that is unset and has no default is an error,
 * not an empty string: a publish must not silently pin something else than
 * what its author meant.
 *
 * @module
 */

/** A variable could not be resolved, or a `${...}` is malformed: names the file, line and variable. */
export class InterpolationError extends Error {
  override name = "InterpolationError";
  constructor(
    readonly file: string,
    readonly line: number | undefined,
    readonly variable: string | undefined,
    reason: string,
  ) {
    super(`Cannot interpolate ${file}${line !== undefined ? `:${line}` : ""}${variable ? `: variable "${variable}"` : ""} ${reason}`);
  }
}

/** Looks a variable up; undefined means unset (an empty string is set). */
export type VariableLookup = (name: string) => string | undefined;

const NAME = /^[A-Za-z_][A-Za-z0-9_]*/;

/** Where a value sits, for error messages. */
export interface InterpolationSite {
  file: string;
  line?: number;
}

/**
 * Interpolates one string.
 *
 * @example
 * ```ts
 * interpolateString("${IMAGE:-busybox}:$$TAG", () => undefined, { file: "app/compose.yaml" }); // "busybox:$TAG"
 * ```
 * @throws {InterpolationError} If a variable is unset without a default, a `?` check fails, or the syntax is malformed.
 */
export function interpolateString(value: string, lookup: VariableLookup, site: InterpolationSite): string {
  const fail = (variable: string | undefined, reason: string) => new InterpolationError(site.file, site.line, variable, reason);
  let out = "";
  let i = 0;
  while (i < value.length) {
    const c = value[i]!;
    if (c !== "$") {
      out += c;
      i++;
      continue;
    }
    const next = value[i + 1];
    if (next === "$") {
      out += "$";
      i += 2;
      continue;
    }
    if (next === "{") {
      const end = closingBrace(value, i + 2);
      if (end < 0) throw fail(undefined, `has an unclosed "\${" in ${JSON.stringify(value)}`);
      out += expand(value.slice(i + 2, end), lookup, site, fail);
      i = end + 1;
      continue;
    }
    const name = NAME.exec(value.slice(i + 1))?.[0];
    if (!name) {
      // A lone `$` (end of string, `$1`, `$ `): compose refuses it; so do we, so the author adds `$$`.
      throw fail(undefined, `has a "$" that starts no variable in ${JSON.stringify(value)} (write "$$" for a literal "$")`);
    }
    const v = lookup(name);
    if (v === undefined) throw fail(name, "is not set and has no default (set it in the environment or in .env beside the compose file, or write ${" + name + ":-default})");
    out += v;
    i += 1 + name.length;
  }
  return out;
}

/** Index of the `}` closing a `${` whose body starts at `from`, honouring nested `${...}`; -1 if none. */
function closingBrace(s: string, from: number): number {
  let depth = 1;
  for (let i = from; i < s.length; i++) {
    if (s[i] === "$" && s[i + 1] === "$") {
      i++;
    } else if (s[i] === "$" && s[i + 1] === "{") {
      depth++;
      i++;
    } else if (s[i] === "}") {
      if (--depth === 0) return i;
    }
  }
  return -1;
}

/** Expands the body of one `${...}`. */
function expand(body: string, lookup: VariableLookup, site: InterpolationSite, fail: (v: string | undefined, r: string) => InterpolationError): string {
  const name = NAME.exec(body)?.[0];
  if (!name) throw fail(undefined, `has an invalid variable name in "\${${body}}"`);
  const rest = body.slice(name.length);
  const v = lookup(name);
  if (rest === "") {
    if (v === undefined) throw fail(name, "is not set and has no default (set it in the environment or in .env beside the compose file, or write ${" + name + ":-default})");
    return v;
  }
  const op = /^(:?[-?+])/.exec(rest)?.[1];
  if (!op) throw fail(name, `has an invalid modifier in "\${${body}}" (expected :- - :? ? :+ +)`);
  const arg = rest.slice(op.length);
  const emptyCounts = op.startsWith(":");
  const missing = v === undefined || (emptyCounts && v === "");
  switch (op.at(-1)) {
    case "-":
      return missing ? interpolateString(arg, lookup, site) : v!;
    case "+":
      return missing ? "" : interpolateString(arg, lookup, site);
    default: {
      if (!missing) return v!;
      const msg = interpolateString(arg, lookup, site);
      throw fail(name, `is ${v === undefined ? "not set" : "empty"}${msg ? `: ${msg}` : ""}`);
    }
  }
}

/** Escapes a resolved value so compose reads it back unchanged (`$` → `$$`). */
export function escapeInterpolation(value: string): string {
  return value.replaceAll("$", () => "$$"); // a function: in a replacement string "$$" means "$"
}

/**
 * Parses a compose `.env` file: `KEY=VALUE` lines, `#` comments, optional
 * `export `, single quotes (literal), double quotes (with `\n` `\t` `\"` `\\`
 * escapes and interpolation) or bare values (interpolated, ` #` starts a
 * comment). Variables in values resolve against `outer` first, then keys
 * defined earlier in the file.
 *
 * @example
 * ```ts
 * parseDotEnv("BASE_IMAGE=local/busybox:1\nGREETING=\"hi ${USER:-there}\"\n", "app/.env", {});
 * // { BASE_IMAGE: "local/busybox:1", GREETING: "hi there" }
 * ```
 * @throws {InterpolationError} If a line is not `KEY=VALUE` or a value cannot be interpolated.
 */
export function parseDotEnv(text: string, file: string, outer: Record<string, string | undefined> = {}): Record<string, string> {
  const vars: Record<string, string> = {};
  const lookup: VariableLookup = (n) => outer[n] ?? (Object.hasOwn(vars, n) ? vars[n] : undefined);
  const lines = text.split(/\r?\n/);
  for (let n = 0; n < lines.length; n++) {
    const raw = lines[n]!;
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*)$/.exec(line);
    if (!m) throw new InterpolationError(file, n + 1, undefined, `has a line that is not KEY=VALUE: ${JSON.stringify(raw.slice(0, 80))}`);
    const [, key, rest] = m as unknown as [string, string, string];
    const site = { file, line: n + 1 };
    let value: string;
    if (rest.startsWith("'")) {
      const end = rest.indexOf("'", 1);
      if (end < 0) throw new InterpolationError(file, n + 1, key, "has an unclosed single quote");
      value = rest.slice(1, end);
    } else if (rest.startsWith('"')) {
      let i = 1;
      let s = "";
      for (; i < rest.length && rest[i] !== '"'; i++) {
        if (rest[i] === "\\" && i + 1 < rest.length) {
          const e = rest[++i]!;
          s += e === "n" ? "\n" : e === "t" ? "\t" : e === "r" ? "\r" : e;
        } else s += rest[i];
      }
      if (i >= rest.length) throw new InterpolationError(file, n + 1, key, "has an unclosed double quote");
      value = interpolateString(s, lookup, site);
    } else {
      value = interpolateString(rest.replace(/\s+#.*$/, "").trim(), lookup, site);
    }
    vars[key] = value;
  }
  return vars;
}
