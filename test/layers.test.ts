/**
 * The layers docs/ARCHITECTURE.md promises, checked on the source itself: lib/ imports nothing
 * outside lib/ (its tests may use the harness and fixtures), the three binaries never import each
 * other, `gateway publish` (the CI client) stands on lib/ alone (type-only imports count: a
 * layer depends on what it names), no error class is declared twice, and no module imports itself
 * round a circle. For circles the
 * imports are read with Bun's own transpiler, so type-only imports (erased at build, harmless)
 * do not count, and lazy `import()`s (the command tables) do.
 *
 * @module
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
const SOURCE_DIRS = ["lib", "gateway", "fioup", "preload"];

/** Every tracked TypeScript file of the four source trees, relative to the repository. */
function sourceFiles(): string[] {
  const out = Bun.spawnSync(["git", "ls-files", "--", ...SOURCE_DIRS.flatMap((d) => [`${d}/*.ts`, `${d}/*.tsx`])], { cwd: ROOT });
  if (out.exitCode !== 0) throw new Error(`git ls-files failed: ${out.stderr.toString()}`);
  return out.stdout.toString().split("\n").filter(Boolean);
}

const inRepo = (file: string, specifiers: string[]) => specifiers.filter((p) => p.startsWith(".")).map((p) => relative(ROOT, resolve(ROOT, dirname(file), p)));

/** A file's relative imports that stay in the build (value and dynamic), as repository paths. */
function importsOf(file: string): string[] {
  const loader = file.endsWith(".tsx") ? "tsx" : "ts";
  const scanned = new Bun.Transpiler({ loader }).scanImports(readFileSync(join(ROOT, file), "utf8").replace(/^#!.*/, ""));
  return inRepo(file, scanned.map((i) => i.path));
}

/** Every relative import and re-export of a file, type-only ones too: a layer depends on what it names. */
function namedOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), "utf8");
  return inRepo(file, [...text.matchAll(/(?:\bfrom|\bimport)\s*\(?\s*["'](\.[^"']+)["']/g)].map((m) => m[1]!));
}

const files = sourceFiles();
const graph = new Map(files.map((f) => [f, importsOf(f)]));
const named = new Map(files.map((f) => [f, namedOf(f)]));

/**
 * Test code: a test file, or a module only test code imports (a folder's fixtures, the store's
 * contract suite, a fake socket), which may stand on test/harness like the tests themselves.
 */
const testCode = new Set(files.filter((f) => /\.test\.tsx?$/.test(f)));
for (let grew = true; grew; ) {
  grew = false;
  for (const f of files) {
    if (testCode.has(f)) continue;
    const importers = files.filter((g) => named.get(g)!.includes(f));
    if (importers.length && importers.every((g) => testCode.has(g))) grew = testCode.add(f) !== undefined;
  }
}
const isTest = (f: string) => testCode.has(f);
const top = (f: string) => f.split("/")[0]!;

describe("layers", () => {
  test("the source trees are found and their imports read", () => {
    expect(files.length).toBeGreaterThan(300);
    expect(graph.get("gateway/main.ts")!.length).toBeGreaterThan(0);
  });

  test("lib/ imports nothing outside lib/ (its tests may use test/harness and test/fixtures)", () => {
    const bad = files
      .filter((f) => top(f) === "lib")
      .flatMap((f) => named.get(f)!.filter((to) => top(to) !== "lib" && !(isTest(f) && /^test\/(harness|fixtures)\//.test(to))).map((to) => `${f} -> ${to}`));
    expect(bad).toEqual([]);
  });

  test("the three binaries never import each other; gateway publish stands on lib/ alone", () => {
    const bad = files.flatMap((f) =>
      named
        .get(f)!
        .filter((to) => {
          if (isTest(f) || top(f) === "lib") return false;
          if (f.startsWith("gateway/publish/")) return !to.startsWith("gateway/publish/") && top(to) !== "lib";
          // package.json: the version.
          return top(to) !== "lib" && top(to) !== top(f) && to !== "package.json";
        })
        .map((to) => `${f} -> ${to}`),
    );
    expect(bad).toEqual([]);
  });

  test("no error class is declared twice (one name, one home: exit-code tables match by class)", () => {
    const homes = new Map<string, string[]>();
    for (const f of files.filter((f) => !isTest(f)))
      for (const m of readFileSync(join(ROOT, f), "utf8").matchAll(/\bclass (\w+Error) extends\b/g)) homes.set(m[1]!, [...(homes.get(m[1]!) ?? []), f]);
    expect([...homes].filter(([, where]) => where.length > 1)).toEqual([]);
    expect(homes.size).toBeGreaterThan(50);
  });

  test("no import circles among the modules (tests aside)", () => {
    const modules = files.filter((f) => !isTest(f));
    const state = new Map<string, "open" | "done">();
    const circles: string[] = [];
    const visit = (f: string, path: string[]) => {
      if (state.get(f) === "done") return;
      if (state.get(f) === "open") {
        circles.push([...path.slice(path.indexOf(f)), f].join(" -> "));
        return;
      }
      state.set(f, "open");
      for (const to of graph.get(f) ?? []) if (graph.has(to) && !isTest(to)) visit(to, [...path, f]);
      state.set(f, "done");
    };
    for (const f of modules) visit(f, []);
    expect(circles).toEqual([]);
  });
});
