import { describe, expect, test } from "bun:test";
import { IgnorePatternError, parseIgnoreFile } from "./ignore.ts";

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
});
