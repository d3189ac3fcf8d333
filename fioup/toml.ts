/**
 * A small TOML reader and writer for the subset sota.toml uses: tables
 * (`[a]`, `[a.b]`), bare or quoted keys, basic and literal strings, integers,
 * booleans and arrays of strings (one line or several). No dependency needed
 * for a file this simple, and the binary stays small.
 *
 * @module
 */

export type TomlValue = string | number | boolean | string[] | TomlTable;
export interface TomlTable {
  [key: string]: TomlValue;
}

export class TomlSyntaxError extends Error {
  override name = "TomlSyntaxError";
  constructor(line: number, why: string) {
    super(`Cannot parse TOML line ${line}: ${why}`);
  }
}

const BARE_KEY = /^[A-Za-z0-9_-]+/;

/**
 * Parses TOML text into nested plain objects.
 *
 * @example
 * ```ts
 * parseToml('[pacman]\ntags = "main"\n').pacman; // { tags: "main" }
 * ```
 * @throws {TomlSyntaxError} On anything outside the supported subset.
 */
export function parseToml(text: string): TomlTable {
  const root: TomlTable = {};
  let table = root;
  const lines = text.replace(/\r\n/g, "\n").split("\n");
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    let src = stripComment(lines[i]!, lineNo).trim();
    if (src === "") continue;
    if (src.startsWith("[")) {
      if (src.startsWith("[[")) throw new TomlSyntaxError(lineNo, "arrays of tables are not supported");
      if (!src.endsWith("]")) throw new TomlSyntaxError(lineNo, "table header without ']'");
      const { keys, rest } = parseKey(src.slice(1, -1).trim(), lineNo);
      if (rest.trim() !== "") throw new TomlSyntaxError(lineNo, "unexpected text in table header");
      table = root;
      for (const k of keys) {
        const next = table[k];
        if (next === undefined) table = table[k] = {};
        else if (isTable(next)) table = next;
        else throw new TomlSyntaxError(lineNo, `"${k}" is already a value`);
      }
      continue;
    }
    const { keys, rest } = parseKey(src, lineNo);
    let after = rest.trimStart();
    if (!after.startsWith("=")) throw new TomlSyntaxError(lineNo, "expected '=' after key");
    after = after.slice(1).trim();
    // Multi-line arrays: gather lines until the brackets balance.
    if (after.startsWith("[")) {
      while (!arrayClosed(after) && i + 1 < lines.length) {
        i++;
        after += " " + stripComment(lines[i]!, i + 1).trim();
      }
    }
    const { value, rest: tail } = parseValue(after, lineNo);
    if (tail.trim() !== "") throw new TomlSyntaxError(lineNo, `unexpected text after value: ${tail.trim()}`);
    let t = table;
    for (const k of keys.slice(0, -1)) {
      const next = t[k];
      if (next === undefined) t = t[k] = {};
      else if (isTable(next)) t = next;
      else throw new TomlSyntaxError(lineNo, `"${k}" is already a value`);
    }
    const last = keys[keys.length - 1]!;
    if (last in t) throw new TomlSyntaxError(lineNo, `duplicate key "${last}"`);
    t[last] = value;
  }
  return root;
}

function isTable(v: TomlValue | undefined): v is TomlTable {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function arrayClosed(s: string): boolean {
  let depth = 0;
  let quote: string | null = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quote) {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = null;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === "[") depth++;
    else if (c === "]") depth--;
  }
  return depth <= 0;
}

function stripComment(line: string, lineNo: number): string {
  let quote: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote) {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = null;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === "#") return line.slice(0, i);
  }
  if (quote) throw new TomlSyntaxError(lineNo, "unterminated string");
  return line;
}

function parseKey(src: string, lineNo: number): { keys: string[]; rest: string } {
  const keys: string[] = [];
  let s = src;
  for (;;) {
    s = s.trimStart();
    if (s.startsWith('"') || s.startsWith("'")) {
      const { value, rest } = parseString(s, lineNo);
      keys.push(value);
      s = rest;
    } else {
      const m = BARE_KEY.exec(s);
      if (!m) throw new TomlSyntaxError(lineNo, "expected a key");
      keys.push(m[0]);
      s = s.slice(m[0].length);
    }
    const t = s.trimStart();
    if (t.startsWith(".")) s = t.slice(1);
    else return { keys, rest: s };
  }
}

function parseString(s: string, lineNo: number): { value: string; rest: string } {
  const q = s[0]!;
  if (q === "'") {
    const end = s.indexOf("'", 1);
    if (end < 0) throw new TomlSyntaxError(lineNo, "unterminated string");
    return { value: s.slice(1, end), rest: s.slice(end + 1) };
  }
  let out = "";
  for (let i = 1; i < s.length; i++) {
    const c = s[i]!;
    if (c === '"') return { value: out, rest: s.slice(i + 1) };
    if (c !== "\\") {
      out += c;
      continue;
    }
    const e = s[++i];
    const simple: Record<string, string> = { b: "\b", t: "\t", n: "\n", f: "\f", r: "\r", '"': '"', "\\": "\\" };
    if (e !== undefined && e in simple) out += simple[e];
    else if (e === "u" || e === "U") {
      const n = e === "u" ? 4 : 8;
      const hex = s.slice(i + 1, i + 1 + n);
      if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length !== n) throw new TomlSyntaxError(lineNo, "bad unicode escape");
      out += String.fromCodePoint(parseInt(hex, 16));
      i += n;
    } else throw new TomlSyntaxError(lineNo, `bad escape "\\${e ?? ""}"`);
  }
  throw new TomlSyntaxError(lineNo, "unterminated string");
}

function parseValue(s: string, lineNo: number): { value: TomlValue; rest: string } {
  if (s.startsWith('"') || s.startsWith("'")) {
    if (s.startsWith('"""') || s.startsWith("'''")) throw new TomlSyntaxError(lineNo, "multi-line strings are not supported");
    return parseString(s, lineNo);
  }
  if (s.startsWith("[")) {
    const items: string[] = [];
    let rest = s.slice(1).trimStart();
    while (!rest.startsWith("]")) {
      const { value, rest: r } = parseValue(rest, lineNo);
      if (typeof value !== "string") throw new TomlSyntaxError(lineNo, "only arrays of strings are supported");
      items.push(value);
      rest = r.trimStart();
      if (rest.startsWith(",")) rest = rest.slice(1).trimStart();
      else if (!rest.startsWith("]")) throw new TomlSyntaxError(lineNo, "expected ',' or ']' in array");
    }
    return { value: items, rest: rest.slice(1) };
  }
  const m = /^(true|false|[+-]?[0-9][0-9_]*)(?=\s|,|\]|$)/.exec(s);
  if (!m) throw new TomlSyntaxError(lineNo, `unsupported value: ${s}`);
  const tok = m[1]!;
  const value = tok === "true" ? true : tok === "false" ? false : Number(tok.replace(/_/g, ""));
  if (typeof value === "number" && !Number.isSafeInteger(value)) throw new TomlSyntaxError(lineNo, "integer out of range");
  return { value, rest: s.slice(tok.length) };
}

/** Writes nested plain objects as TOML: scalars first, then one `[table]` per nested object. */
export function stringifyToml(table: TomlTable): string {
  const out: string[] = [];
  writeTable(table, [], out);
  return out.join("\n").replace(/^\n+/, "") + "\n";
}

function writeTable(table: TomlTable, path: string[], out: string[]): void {
  const scalars = Object.entries(table).filter(([, v]) => !isTable(v));
  const tables = Object.entries(table).filter(([, v]) => isTable(v)) as [string, TomlTable][];
  if (path.length && (scalars.length || !tables.length)) out.push("", `[${path.map(formatKey).join(".")}]`);
  for (const [k, v] of scalars) out.push(`${formatKey(k)} = ${formatValue(v)}`);
  for (const [k, v] of tables) writeTable(v, [...path, k], out);
}

function formatKey(k: string): string {
  return /^[A-Za-z0-9_-]+$/.test(k) ? k : JSON.stringify(k);
}

function formatValue(v: TomlValue): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number") {
    if (!Number.isSafeInteger(v)) throw new TypeError(`Cannot write TOML: ${v} is not an integer`);
    return String(v);
  }
  if (typeof v === "boolean") return String(v);
  if (Array.isArray(v)) return `[${v.map((s) => JSON.stringify(s)).join(", ")}]`;
  throw new TypeError("Cannot write TOML: nested table in a value position");
}
