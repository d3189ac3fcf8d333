import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { removeMadeFolders, whyCannotFill, whyCannotRead, whyCannotWrite } from "./paths.ts";

const dir = mkdtempSync(join(tmpdir(), "fs-paths-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, "file"), "x");
mkdirSync(join(dir, "folder"));

test("says why a file cannot be written there, naming the user's path", async () => {
  expect(await whyCannotWrite(join(dir, "new"))).toBeUndefined();
  expect(await whyCannotWrite(join(dir, "file"))).toBeUndefined(); // replaced: the caller decides whether it may be
  expect(await whyCannotWrite(join(dir, "nodir", "x"))).toBe(`the folder ${join(dir, "nodir")} does not exist`);
  expect(await whyCannotWrite(join(dir, "file", "x"))).toBe(`${join(dir, "file")} is a file, not a folder`);
  expect(await whyCannotWrite(join(dir, "file", "deeper", "x"))).toBe(`${join(dir, "file")} is a file, not a folder`);
  expect(await whyCannotWrite(join(dir, "folder"))).toBe(`${join(dir, "folder")} is a folder, give a file name`);
});

test("says why a path cannot be read as the kind a flag takes", async () => {
  expect(await whyCannotRead(join(dir, "file"), "file")).toBeUndefined();
  expect(await whyCannotRead(join(dir, "folder"), "directory")).toBeUndefined();
  expect(await whyCannotRead(join(dir, "folder"))).toBeUndefined();
  expect(await whyCannotRead(join(dir, "folder"), "file")).toBe("it is a directory");
  expect(await whyCannotRead(join(dir, "file"), "directory")).toBe("it is a file, give a directory");
  expect(await whyCannotRead(join(dir, "nope"), "file")).toBe("no such file");
  expect(await whyCannotRead(join(dir, "nope"), "directory")).toBe("no such directory");
  expect(await whyCannotRead(join(dir, "file", "x"))).toBe("a directory above it is a file");
});

test("says why a folder cannot be made or filled: it must be new or empty", async () => {
  mkdirSync(join(dir, "empty"));
  mkdirSync(join(dir, "full"));
  writeFileSync(join(dir, "full", "x"), "x");
  expect(await whyCannotFill(join(dir, "new"))).toBeUndefined();
  expect(await whyCannotFill(join(dir, "empty"))).toBeUndefined();
  expect(await whyCannotFill(join(dir, "full"))).toBe(`${join(dir, "full")} is not empty (give a new or empty folder)`);
  expect(await whyCannotFill(join(dir, "file"))).toBe(`${join(dir, "file")} is a file, give a folder`);
  expect(await whyCannotFill(join(dir, "nodir", "x"))).toBe(`the folder ${join(dir, "nodir")} does not exist`);
  expect(await whyCannotFill(join(dir, "file", "x"))).toBe(`${join(dir, "file")} is a file, not a folder`);
});

test("removeMadeFolders removes the empty folders mkdir -p made, deepest first, and stops at one that holds something", () => {
  const base = join(dir, "made");
  mkdirSync(base);
  const made = mkdirSync(join(base, "a", "b", "c"), { recursive: true });
  expect(made).toBe(join(base, "a"));
  removeMadeFolders(made, join(base, "a", "b", "c"));
  expect(readdirSync(base)).toEqual([]); // a, b and c gone; base (not made) stays

  const kept = mkdirSync(join(base, "x", "y", "z"), { recursive: true });
  writeFileSync(join(base, "x", "y", "keep"), "someone's");
  removeMadeFolders(kept, join(base, "x", "y", "z"));
  expect(readdirSync(join(base, "x", "y"))).toEqual(["keep"]); // z gone; y holds a file: it and x stay
  removeMadeFolders(undefined, join(base, "x", "y")); // mkdir made nothing: nothing is removed
  expect(readdirSync(join(base, "x"))).toEqual(["y"]);
});
