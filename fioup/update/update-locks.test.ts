import { expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../../test/harness/tmp.ts";
import { listUpdateLocks, removeUpdateLock, writeUpdateLock } from "./update-locks.ts";

test("update locks: any file but dot files, with its first line as the reason", async () => {
  const dir = join(await tempDir("locks-"), "update-locks");
  expect(listUpdateLocks(dir)).toEqual([]);
  writeUpdateLock(dir, "fioup", "backup running");
  writeFileSync(join(dir, "app"), "");
  writeFileSync(join(dir, ".tmp-write"), "ignored");
  expect(listUpdateLocks(dir).map(({ name, reason }) => ({ name, reason }))).toEqual([{ name: "app", reason: undefined }, { name: "fioup", reason: "backup running" }]);
  expect(removeUpdateLock(dir, "fioup")).toBe(true);
  expect(removeUpdateLock(dir, "fioup")).toBe(false);
  expect(listUpdateLocks(dir).map((l) => l.name)).toEqual(["app"]);
});
