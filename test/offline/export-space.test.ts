/**
 * `gateway export` onto a small medium: a USB stick is often smaller than a whole bundle, and a
 * delta bundle is made to fit one. A 5 MiB tmpfs stands for the stick. The whole bundle (a
 * ~12 MB layer) is refused before a blob is copied, with the sizes and the stick's path, leaving
 * the stick as it was; the `--from` bundle (a ~1 MiB delta) is written there, its base layer and
 * rebuilt tar staying in the system's temp folder, never on the stick. A temp folder too small
 * for them is named, with TMPDIR as the way out.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { run, tempDir } from "../harness/tmp.ts";
import { ROOT } from "../fioup/_setup.ts";
import { twoVersions, type TwoVersions } from "./_export-fixture.ts";
import { bundleIndex } from "./_setup.ts";

let fx: TwoVersions;
let dir: string;
const mounts: string[] = [];

/** A tmpfs of `size` at `at`, unmounted in afterAll. */
async function smallDisk(at: string, size: string): Promise<string> {
  mkdirSync(at, { recursive: true });
  await run(["mount", "-t", "tmpfs", "-o", `size=${size}`, "tmpfs", at]);
  mounts.push(at);
  return at;
}

/** `gateway export` as an operator runs it; its exit code and what it printed. */
async function exportTo(out: string, o: { from?: number; env?: Record<string, string> } = {}) {
  const r = await run(fx.exportCmd(out, o.from ? ["--from", String(o.from)] : []), { cwd: ROOT, allowFail: true, ...(o.env ? { env: o.env } : {}) });
  return { code: r.code, text: r.stderr + r.stdout };
}

beforeAll(async () => {
  dir = await tempDir("export-space-");
  fx = await twoVersions("export-space", 20_000_000);
}, 120_000);

afterAll(async () => {
  for (const m of mounts) await run(["umount", m], { allowFail: true });
  await fx?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("gateway export onto a small medium", () => {
  test("a whole bundle larger than the medium is refused before a blob is copied, with the sizes and the path", async () => {
    const usb = await smallDisk(join(dir, "usb-whole"), "5m");
    const r = await exportTo(join(usb, "bundle"));
    expect(r.code).toBe(1);
    expect(r.text).toMatch(new RegExp(`need [0-9.]+ MiB, [0-9.]+ [KM]iB free on ${usb}`));
    expect(r.text).not.toContain("ENOSPC");
    expect(r.text).not.toMatch(/copying \d+ blobs/);
    expect(readdirSync(usb)).toEqual([]); // the stick as it was: no half bundle, no scratch
  }, 120_000);

  test("a delta bundle that fits is written, its scratch kept off the medium", async () => {
    const usb = await smallDisk(join(dir, "usb-delta"), "5m");
    const r = await exportTo(join(usb, "bundle"), { from: 1 });
    expect(r.text).not.toContain("carried whole");
    expect(r.code).toBe(0);
    expect(bundleIndex(join(usb, "bundle")).bundle.deltas).toHaveLength(1);
    expect(readdirSync(usb)).toEqual(["bundle"]);
  }, 120_000);

  test("a temp folder too small for the delta check is named, with TMPDIR as the remedy", async () => {
    const tmp = await smallDisk(join(dir, "small-tmp"), "2m");
    const out = join(dir, "roomy");
    const r = await exportTo(out, { from: 1, env: { TMPDIR: tmp } });
    expect(r.code).toBe(1);
    expect(r.text).toMatch(new RegExp(`need [0-9.]+ MiB, [0-9.]+ [KM]iB free on ${tmp}.*TMPDIR`));
    expect(existsSync(join(out, "index.json"))).toBe(false);
    expect(readdirSync(tmp)).toEqual([]); // the scratch is removed
  }, 120_000);
});
