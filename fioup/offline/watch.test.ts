import { afterAll, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { removeTempDir, tempDir } from "../../test/harness/tmp.ts";
import { noBundle } from "./watch.ts";

const dir = await tempDir("watch-");
afterAll(() => removeTempDir(dir));

test("a watched folder without a bundle says where one is, in a sentence for one or several", async () => {
  expect(await noBundle(dir)).toBe(`no bundle in ${dir} yet (no index.json there); watching on`);
  for (const b of ["v2", "v3"]) {
    mkdirSync(join(dir, b));
    writeFileSync(join(dir, b, "index.json"), "{}");
    if (b === "v2") expect(await noBundle(dir)).toBe(`no bundle in ${dir} yet (no index.json there); ${join(dir, "v2")} holds one: give that folder to --offline`);
  }
  expect(await noBundle(dir)).toBe(`no bundle in ${dir} yet (no index.json there); ${join(dir, "v2")}, ${join(dir, "v3")} each hold one: give one of those folders to --offline`);
});
