import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { exchangePaths } from "./exchange.ts";

const dir = mkdtempSync(join(tmpdir(), "fs-exchange-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("swaps two folders in one step, and says when it did not (nothing changed then)", async () => {
  const a = join(dir, "a");
  const b = join(dir, "b");
  mkdirSync(a);
  mkdirSync(b);
  writeFileSync(join(a, "from-a"), "");
  writeFileSync(join(b, "from-b"), "");
  expect(await exchangePaths(a, b)).toBe(true);
  expect({ a: readdirSync(a), b: readdirSync(b) }).toEqual({ a: ["from-b"], b: ["from-a"] });
  // A missing side cannot be swapped: false, and the other is where it was.
  expect(await exchangePaths(a, join(dir, "missing"))).toBe(false);
  expect(readdirSync(a)).toEqual(["from-b"]);
});
