/** preload's work folder beside --out: made, removed at the end, and a killed preload's removed by the next one. */
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { acquireLock } from "../lib/fs/pid-lock.ts";
import { ImageNoSpaceError, OutputError } from "./output.ts";
import { noSpaceError, openWorkDir } from "./work-dir.ts";

const dir = await mkdtemp(join(tmpdir(), "preload-work-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("the work folder sits beside --out and goes at close, with --out's .partial; a killed preload's goes first, a running one's stays", async () => {
  const out = join(dir, "images", "img");
  mkdirSync(join(dir, "images", ".preload-dead"), { recursive: true });
  writeFileSync(join(dir, "images", ".preload-dead", "owner.lock"), "2147483000\n");
  mkdirSync(join(dir, "images", ".preload-running"));
  acquireLock(join(dir, "images", ".preload-running", "owner.lock"));
  const lines: string[] = [];
  const work = await openWorkDir(out, { info: (l) => lines.push(l) });
  expect(lines).toEqual([`removed ${join(dir, "images", ".preload-dead")}: the unfinished work of an earlier preload (pid 2147483000) that was killed`]);
  expect(work.path.startsWith(join(dir, "images", ".preload-"))).toBe(true);
  expect(existsSync(join(work.path, "owner.lock"))).toBe(true);
  writeFileSync(`${out}.partial`, "half");
  await work.close();
  expect(readdirSync(join(dir, "images")).sort()).toEqual([".preload-running"]);
});

test("a full disk is said as what preload writes beside --out; other errors are not", () => {
  const outPath = join(dir, "img.tar");
  const full = Object.assign(new Error("write failed"), { code: "ENOSPC" });
  const said = noSpaceError(full, { outPath, format: "tar" });
  expect(said).toBeInstanceOf(OutputError);
  expect(said!.message).toBe(
    `No space left to write the image at ${outPath}: preload writes the image's tree, the blob cache (--cache DIR puts it elsewhere), the tar file in ${dir}; free some space in ${dir} or give an --out on a larger file system (the unfinished image was removed, ${outPath} is as it was)`,
  );
  expect(noSpaceError(new ImageNoSpaceError("the tar file needs 2 MiB, 1 MiB free", { where: "/cache" }), { outPath, cache: "/cache", format: "tar" })!.message).toContain(
    " or the cache /cache (the tar file needs 2 MiB, 1 MiB free): preload writes the image's tree, the tar file in",
  );
  expect(noSpaceError(new Error("other"), { outPath, format: "dir" })).toBeUndefined();
});

test("stopped while --out (a folder holding an earlier image) is being replaced: --out is left empty and said so, not 'as it was'", async () => {
  const out = join(dir, "replace", "img");
  mkdirSync(join(out, "etc"), { recursive: true });
  writeFileSync(join(out, "etc", "os-release"), "half of the new image");
  // A preload at the copy into --out (writeOutput told it, onReplace), stopped by SIGTERM.
  const script = join(dir, "replace", "stop.ts");
  writeFileSync(
    script,
    `import { openWorkDir } from ${JSON.stringify(join(import.meta.dir, "work-dir.ts"))};
const work = await openWorkDir(${JSON.stringify(out)}, { info: () => {} });
work.replacingOut(true);
console.log("ready");
await Bun.sleep(30_000);
`,
  );
  const p = Bun.spawn([process.execPath, script], { stdout: "pipe", stderr: "pipe" });
  const reader = p.stdout.getReader();
  expect(new TextDecoder().decode((await reader.read()).value)).toContain("ready");
  p.kill("SIGTERM");
  expect(await p.exited).toBe(143);
  const err = await new Response(p.stderr).text();
  expect(err).toContain(`preload: stopped by SIGTERM; removed the unfinished image; ${out} is left empty: the earlier image it held was removed before the new one was copied in`);
  expect(readdirSync(out)).toEqual([]);
  expect(readdirSync(join(dir, "replace")).sort()).toEqual(["img", "stop.ts"]);
});
