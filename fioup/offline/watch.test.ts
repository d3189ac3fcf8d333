import { afterAll, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { removeTempDir, tempDir } from "../../test/harness/tmp.ts";
import { noBundle, retryWaiting } from "./watch.ts";

const dir = await tempDir("watch-");
afterAll(() => removeTempDir(dir));

test("a watched folder without a bundle says where one is, in a sentence for one or several", async () => {
  expect(await noBundle(dir)).toBe(`no bundle in ${dir} yet (no index.json there); watching on`);
  for (const b of ["v2", "v3"]) {
    mkdirSync(join(dir, b));
    writeFileSync(join(dir, b, "index.json"), JSON.stringify({ bundle: { format: 1 } }));
    if (b === "v2") expect(await noBundle(dir)).toBe(`no bundle in ${dir} yet (no index.json there); ${join(dir, "v2")} holds one: give that folder to --offline`);
  }
  expect(await noBundle(dir)).toBe(`no bundle in ${dir} yet (no index.json there); ${join(dir, "v2")}, ${join(dir, "v3")} each hold one: give one of those folders to --offline`);
});

test("an OCI layout's index.json is no bundle, and past five folders the rest are counted, not named", async () => {
  const many = await tempDir("watch-many-");
  try {
    mkdirSync(join(many, "oci"));
    writeFileSync(join(many, "oci", "index.json"), JSON.stringify({ schemaVersion: 2, manifests: [] }));
    expect(await noBundle(many)).toBe(`no bundle in ${many} yet (no index.json there); watching on`);
    for (let i = 1; i <= 8; i++) {
      mkdirSync(join(many, `b${i}`));
      writeFileSync(join(many, `b${i}`, "index.json"), JSON.stringify({ bundle: { format: 1 } }));
    }
    const named = [1, 2, 3, 4, 5].map((i) => join(many, `b${i}`)).join(", ");
    expect(await noBundle(many)).toBe(`no bundle in ${many} yet (no index.json there); ${named} and 3 more each hold one: give one of those folders to --offline`);
  } finally {
    await removeTempDir(many);
  }
});

test("a failed bundle's retry time, kept on the wall clock, waits at most 5 minutes: one further off (the clock set back since) is due", () => {
  const now = Date.parse("2026-12-07T10:00:00Z");
  const min = 60_000;
  expect(retryWaiting({ retryAt: now + 30_000 }, now)).toBe(true);
  expect(retryWaiting({ retryAt: now + 5 * min }, now)).toBe(true);
  expect(retryWaiting({ retryAt: now - 1 }, now)).toBe(false);
  // Saved at 22:00 by a board that booted 12 h ahead; NTP has since set the clock back.
  expect(retryWaiting({ retryAt: now + 12 * 60 * min + 30_000 }, now)).toBe(false);
});
