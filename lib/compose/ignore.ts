/**
 * `.composeappignores`: which files of an app directory stay out of the bundle,
 * in `.dockerignore` syntax so users need to learn nothing new. One pattern a
 * line; `#` starts a comment; `*`, `?` and `[...]` match within one path
 * segment; `**` matches any number of directories; `!` re-includes; a leading
 * `/` is ignored (patterns are relative to the app dir); the last matching
 * line wins; a pattern that matches a directory matches everything under it.
 * Publish reads a build context's `.dockerignore` with it too, for the paths
 * its `!` lines name (`negates`).
 * Beside it, {@link pathListMatcher}: a caller's own list of paths to leave
 * out, taken literally (publish gives what git ignores: its policy, not this
 * module's), which no `!` line brings back.
 *
 * @module
 */

export class IgnorePatternError extends Error {
  override name = "IgnorePatternError";
}

interface Rule {
  negate: boolean;
  re: RegExp;
  source: string;
}

/** A compiled ignore file, or a list of paths ({@link pathListMatcher}). */
export interface IgnoreMatcher {
  /** Whether `path` (relative, `/`-separated, no `./`) is excluded. */
  ignores(path: string): boolean;
  /** Whether any rule re-includes (`!`); if not, an excluded directory need not be walked. */
  readonly hasNegations: boolean;
}

/** A compiled ignore file: it can also say which paths a `!` line names. */
export interface IgnoreFileMatcher extends IgnoreMatcher {
  /** Whether a `!` line's pattern matches `path` itself (one matching only a folder above it does not count). */
  negates(path: string): boolean;
}

function cleanPath(p: string): string {
  const parts: string[] = [];
  for (const seg of p.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") parts.pop();
    else parts.push(seg);
  }
  return parts.join("/");
}

function escapeRe(c: string): string {
  return /[\\^$.*+?()[\]{}|/]/.test(c) ? "\\" + c : c;
}

function compile(pattern: string, where: string): RegExp {
  let re = "^";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "*") {
      if (pattern[i + 1] === "*") {
        i++;
        if (pattern[i + 1] === "/") {
          i++;
          re += "(?:.*/)?"; // "**/" : zero or more directories
        } else {
          re += ".*";
        }
      } else {
        re += "[^/]*";
      }
    } else if (c === "?") {
      re += "[^/]";
    } else if (c === "\\") {
      i++;
      if (i >= pattern.length) throw new IgnorePatternError(`Invalid ignore pattern at ${where}: "${pattern}" ends with a backslash`);
      re += escapeRe(pattern[i]!);
    } else if (c === "[") {
      const end = pattern.indexOf("]", i + 2);
      if (end < 0) throw new IgnorePatternError(`Invalid ignore pattern at ${where}: "${pattern}" has an unclosed [`);
      let body = pattern.slice(i + 1, end);
      if (body.startsWith("!") || body.startsWith("^")) body = "^" + body.slice(1);
      re += "[" + body.replace(/\\/g, "\\\\").replace(/\//g, "") + "]";
      i = end;
    } else {
      re += escapeRe(c);
    }
  }
  try {
    return new RegExp(re + "$");
  } catch {
    throw new IgnorePatternError(`Invalid ignore pattern at ${where}: "${pattern}"`);
  }
}

/**
 * Compiles the text of an ignore file.
 *
 * @example
 * ```ts
 * const m = parseIgnoreFile("Dockerfile\n*.py\n!keep.py\n");
 * m.ignores("app.py"); // true
 * m.ignores("keep.py"); // false
 * m.negates("keep.py"); // true
 * ```
 * @param file The file's path, for errors ("Invalid ignore pattern at web/.composeappignores:4: ..."); without it they say the line alone.
 * @throws {IgnorePatternError} If a pattern is malformed (unclosed `[`, trailing `\`).
 */
export function parseIgnoreFile(text: string, file = "line"): IgnoreFileMatcher {
  const rules: Rule[] = [];
  text.split(/\r?\n/).forEach((raw, idx) => {
    let line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    let negate = false;
    if (line.startsWith("!")) {
      negate = true;
      line = line.slice(1).trim();
    }
    const pattern = cleanPath(line);
    if (pattern === "") return;
    rules.push({ negate, re: compile(pattern, file === "line" ? `line ${idx + 1}` : `${file}:${idx + 1}`), source: raw });
  });
  // The last line matching the path or a folder above it decides.
  const lastMatch = (path: string): Rule | undefined => {
    const file = cleanPath(path);
    const parents: string[] = [];
    const segs = file.split("/");
    for (let i = 1; i < segs.length; i++) parents.push(segs.slice(0, i).join("/"));
    let last: Rule | undefined;
    for (const rule of rules) if (rule.re.test(file) || parents.some((p) => rule.re.test(p))) last = rule;
    return last;
  };
  return {
    hasNegations: rules.some((r) => r.negate),
    ignores: (path) => lastMatch(path)?.negate === false,
    negates: (path) => rules.some((r) => r.negate && r.re.test(cleanPath(path))),
  };
}

/**
 * A matcher of literal paths, relative and `/`-separated: it ignores each path
 * listed and everything under a listed directory (written with or without a
 * trailing `/`). Nothing in a path is a pattern, so a file named `a*.txt`
 * matches itself only.
 *
 * @example
 * ```ts
 * const m = pathListMatcher([".env", "secrets/"]);
 * m.ignores(".env"); // true
 * m.ignores("secrets/db.key"); // true
 * m.ignores("app.env"); // false
 * ```
 */
export function pathListMatcher(paths: Iterable<string>): IgnoreMatcher {
  const listed = new Set<string>();
  for (const p of paths) {
    const clean = cleanPath(p);
    if (clean !== "") listed.add(clean);
  }
  return {
    hasNegations: false,
    ignores(path: string): boolean {
      const segs = cleanPath(path).split("/");
      for (let i = 1; i <= segs.length; i++) if (listed.has(segs.slice(0, i).join("/"))) return true;
      return false;
    },
  };
}
