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
import {
  freePort, httpdCompose, Publisher, pushImageDetailed, randomBytes, ROOT, startDockerRegistry, startTestGateway, type DockerRegistryHandle, type TestGateway,
} from "../fioup/_setup.ts";
import { fileNear, realFilePaths, realFiles, realFilesImage } from "../deltas/_real-files.ts";
import { bundleIndex } from "./_setup.ts";

const APP = `space${process.pid}`;
const REPO = "test/export-space";
let upstream: DockerRegistryHandle;
let gw: TestGateway;
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
  const r = await run(
    [process.execPath, join(ROOT, "gateway/main.ts"), "export", "--data", gw.dataDir, "--target", "2", ...(o.from ? ["--from", String(o.from)] : []), "--hwid", "amd64-linux", "--out", out],
    { cwd: ROOT, allowFail: true, ...(o.env ? { env: o.env } : {}) },
  );
  return { code: r.code, text: r.stderr + r.stdout };
}

beforeAll(async () => {
  [upstream, gw] = await Promise.all([startDockerRegistry(), startTestGateway()]);
  dir = await tempDir("export-space-");
  const port = await freePort();
  const paths = realFilePaths(20_000_000);
  const files = realFiles(paths);
  const v1 = await pushImageDetailed(upstream, REPO, "v1", realFilesImage(files, "v1"));
  const pub = await Publisher.create(gw, upstream, { [`${APP}/docker-compose.yml`]: httpdCompose(v1.ref, port) });
  await pub.publish(1);
  const v2 = await pushImageDetailed(upstream, REPO, "v2", realFilesImage(files, "v2", { [`/data/lib/${fileNear(paths, 1 << 20)}`]: randomBytes(1 << 20) }));
  await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(v2.ref, port) });
  await pub.publish(2);
}, 120_000);

afterAll(async () => {
  for (const m of mounts) await run(["umount", m], { allowFail: true });
  await Promise.all([gw?.stop(), upstream?.stop()]);
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
