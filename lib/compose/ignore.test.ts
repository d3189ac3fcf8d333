import { describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IGNORE_FILE_NAME } from "./app-format.ts";
import { readIgnoreFile } from "./bundle.ts";
import { IgnorePatternError, parseIgnoreFile, pathListMatcher } from "./ignore.ts";

describe("parseIgnoreFile", () => {
  test("matches names, globs and skips comments", () => {
    const m = parseIgnoreFile("# no sources\nDockerfile\n*.py\n\n  /docs  \n");
    expect(m.ignores("Dockerfile")).toBe(true);
    expect(m.ignores("app.py")).toBe(true);
    expect(m.ignores("sub/app.py")).toBe(false); // * stays within one segment
    expect(m.ignores("docs/a/b.md")).toBe(true); // a matched dir covers its contents
    expect(m.ignores("# no sources")).toBe(false);
    expect(m.ignores("nginx.conf")).toBe(false);
  });

  test("** spans directories", () => {
    const m = parseIgnoreFile("**/*.pyc\nbuild/**\n");
    expect(m.ignores("a.pyc")).toBe(true);
    expect(m.ignores("x/y/a.pyc")).toBe(true);
    expect(m.ignores("build/x/y")).toBe(true);
    expect(m.ignores("built")).toBe(false);
  });

  test("! re-includes and the last matching line wins", () => {
    const m = parseIgnoreFile("*.md\n!README.md\nsecret/\n!secret/public.txt\nREADME*\n");
    expect(m.ignores("notes.md")).toBe(true);
    expect(m.ignores("README.md")).toBe(true); // re-excluded by the last line
    expect(m.ignores("secret/key")).toBe(true);
    expect(m.ignores("secret/public.txt")).toBe(false);
    expect(m.hasNegations).toBe(true);
  });

  test("negates: whether a ! line's pattern matches the path itself, not only a folder above it", () => {
    const m = parseIgnoreFile("*\n!src\n!dist/*.js\n.env\n");
    expect(m.negates("src")).toBe(true);
    expect(m.negates("src/.env")).toBe(false); // only through its folder
    expect(m.negates("dist/app.js")).toBe(true);
    expect(m.negates("dist/app.js.map")).toBe(false);
    expect(parseIgnoreFile(".env\n").negates("notes.txt")).toBe(false);
  });

  test("character classes and ?", () => {
    const m = parseIgnoreFile("file[0-9].txt\nlog?\n[!a]bc\n");
    expect(m.ignores("file3.txt")).toBe(true);
    expect(m.ignores("filex.txt")).toBe(false);
    expect(m.ignores("log1")).toBe(true);
    expect(m.ignores("log12")).toBe(false);
    expect(m.ignores("xbc")).toBe(true);
    expect(m.ignores("abc")).toBe(false);
  });

  test("rejects malformed patterns", () => {
    expect(() => parseIgnoreFile("file[0-9.txt")).toThrow(IgnorePatternError);
  });

  test("a malformed pattern is said with its file and line, when the file is named", () => {
    expect(() => parseIgnoreFile("# ok\n*.md\n[\n", "/ci/repo/worker/.composeappignores")).toThrow(
      'Invalid ignore pattern at /ci/repo/worker/.composeappignores:3: "[" has an unclosed [',
    );
    expect(() => parseIgnoreFile("a\\")).toThrow('Invalid ignore pattern at line 1: "a\\" ends with a backslash');
  });

  test("publish reads an app's ignore file with its path in errors", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ignore-"));
    try {
      await writeFile(join(dir, IGNORE_FILE_NAME), "*.md\n[\n");
      await expect(readIgnoreFile(dir)).rejects.toThrow(`Invalid ignore pattern at ${join(dir, IGNORE_FILE_NAME)}:2`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("pathListMatcher", () => {
  test("ignores the paths listed and what is under a listed folder, with nothing read as a pattern", () => {
    const m = pathListMatcher([".env", "local/", "cache", "a*.txt", "./sub/x"]);
    expect(m.hasNegations).toBe(false);
    for (const p of [".env", "local/key", "local", "cache/a/b", "a*.txt", "sub/x"]) expect(m.ignores(p)).toBe(true);
    for (const p of ["app.env", "sub/.env", "localx", "ab.txt", "sub"]) expect(m.ignores(p)).toBe(false);
  });
});
