import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fsWhy } from "./why.ts";

const dir = mkdtempSync(join(tmpdir(), "fs-why-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("says why a read failed in words, without the errno and the path again", async () => {
  writeFileSync(join(dir, "file"), "x");
  const why = (path: string) => readFile(path).then(() => "read", fsWhy);
  expect(await why(join(dir, "missing"))).toBe("no such file");
  expect(await why(dir)).toBe("it is a directory");
  expect(await why(join(dir, "file", "below"))).toBe("a directory above it is a file");
  expect(fsWhy(new Error("something else"))).toBe("something else");
});

test("a full disk is said in words (/dev/full answers every write with ENOSPC)", async () => {
  const { writeFile } = await import("node:fs/promises");
  expect(await writeFile("/dev/full", "x").then(() => "written", fsWhy)).toBe("no space left on the device");
});
