import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { claimingTgz, sha, tgz, type TarEntrySpec as E } from "../../test/fixtures/tar-builders.ts";
import { createBundle } from "./bundle.ts";
import { BundleIndexMismatchError, extractBundle, InvalidComposeBundleError, UnsafeBundleError } from "./extract.ts";


const work = mkdtempSync(join(tmpdir(), "extract-test-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));


let n = 0;
/** A fresh parent dir with a sentinel beside the app dir, to see that nothing else changes. */
function fresh(): { parent: string; dest: string } {
  const parent = join(work, `case${n++}`, "apps");
  mkdirSync(parent, { recursive: true });
  writeFileSync(join(parent, "sentinel"), "keep");
  return { parent, dest: join(parent, "app") };
}

function write(bytes: Uint8Array): string {
  const p = join(work, `b${n++}.tgz`);
  writeFileSync(p, bytes);
  return p;
}

/** Nothing but the sentinel in the parent, nothing outside the case dir. */
function expectUntouched(parent: string) {
  expect(readdirSync(parent)).toEqual(["sentinel"]);
  expect(readdirSync(join(parent, ".."))).toEqual(["apps"]);
}

async function refuses(entries: E[], index: Record<string, string>, err: new (...a: any[]) => Error, opts: { maxFileSize?: number } = {}, reason?: string) {
  const { parent, dest } = fresh();
  const bundle = write(await tgz(entries));
  const p = extractBundle({ bundle, index, dest, ...opts });
  await expect(p).rejects.toThrow(err);
  if (reason) await expect(p).rejects.toThrow(reason);
  expectUntouched(parent);
}

describe("extractBundle", () => {
  test("extracts a bundle made by createBundle, every file checked, modes kept", async () => {
    const app = join(work, "src-app");
    mkdirSync(join(app, "conf"), { recursive: true });
    writeFileSync(join(app, "docker-compose.yml"), "services: {}\n");
    writeFileSync(join(app, "conf/nginx.conf"), "server {}\n");
    writeFileSync(join(app, "run.sh"), "#!/bin/sh\necho hi\n", { mode: 0o755 });
    const b = await createBundle(app, { composeFileName: "docker-compose.yml", composeText: "services:\n  a:\n    image: x@sha256:" + "a".repeat(64) + "\n", outFile: join(work, "real.tgz") });
    const { dest } = fresh();
    const r = await extractBundle({ bundle: b.path, index: b.index, dest });
    expect(r.files).toBe(3);
    expect(readFileSync(join(dest, "docker-compose.yml"), "utf8")).toContain("image: x@sha256:");
    expect(readFileSync(join(dest, "conf/nginx.conf"), "utf8")).toBe("server {}\n");
    expect(statSync(join(dest, "run.sh")).mode & 0o777).toBe(0o755);
    expect(statSync(join(dest, "conf/nginx.conf")).mode & 0o777).toBe(0o644);
  });

  test("reads the bundle from a stream and replaces the previous app dir", async () => {
    const { parent, dest } = fresh();
    mkdirSync(dest);
    writeFileSync(join(dest, "old-file"), "old");
    const bytes = await tgz([{ name: "docker-compose.yml", content: "v2" }]);
    await extractBundle({ bundle: new Blob([bytes]).stream(), index: { "docker-compose.yml": sha("v2") }, dest });
    expect(readdirSync(dest)).toEqual(["docker-compose.yml"]);
    expect(readdirSync(parent).sort()).toEqual(["app", "sentinel"]);
  });

  test("calls beforeCommit with the checked temp dir before the rename", async () => {
    const { dest } = fresh();
    const bundle = write(await tgz([{ name: "a", content: "A" }]));
    await extractBundle({
      bundle,
      index: { a: sha("A") },
      dest,
      beforeCommit: async (dir) => {
        expect(existsSync(dest)).toBe(false);
        expect(readFileSync(join(dir, "a"), "utf8")).toBe("A");
        mkdirSync(join(dir, ".fioup"));
        writeFileSync(join(dir, ".fioup/images.yml"), "services: {}\n");
      },
    });
    expect(existsSync(join(dest, ".fioup/images.yml"))).toBe(true);
  });

  test("a failing beforeCommit leaves the previous app dir as it was", async () => {
    const { parent, dest } = fresh();
    mkdirSync(dest);
    writeFileSync(join(dest, "docker-compose.yml"), "v1");
    const bundle = write(await tgz([{ name: "docker-compose.yml", content: "v2" }]));
    const boom = new Error("image load failed");
    await expect(
      extractBundle({ bundle, index: { "docker-compose.yml": sha("v2") }, dest, beforeCommit: async () => Promise.reject(boom) }),
    ).rejects.toBe(boom);
    expect(readFileSync(join(dest, "docker-compose.yml"), "utf8")).toBe("v1");
    expect(readdirSync(parent).sort()).toEqual(["app", "sentinel"]);
  });

  test("beforeCommit's error is its own, not the bundle's, even when it speaks of a tar file (a docker load out of space)", async () => {
    const { dest } = fresh();
    const bundle = write(await tgz([{ name: "docker-compose.yml", content: "v2" }]));
    const full = new Error("Cannot load image x: Error processing tar file(exit status 1): write /y: no space left on device");
    await expect(
      extractBundle({ bundle, index: { "docker-compose.yml": sha("v2") }, dest, beforeCommit: async () => Promise.reject(full) }),
    ).rejects.toBe(full);
  });

  test("removes temp dirs left by an extraction that died", async () => {
    const { parent, dest } = fresh();
    const stale = join(parent, ".app.extract-999999999-zzz");
    mkdirSync(stale);
    writeFileSync(join(stale, "half"), "x");
    await extractBundle({ bundle: write(await tgz([{ name: "a", content: "A" }])), index: { a: sha("A") }, dest });
    expect(readdirSync(parent).sort()).toEqual(["app", "sentinel"]);
  });

  test("refuses a path with .. (traversal)", async () => {
    await refuses([{ name: "ok", content: "x" }, { name: "../../evil", content: "x" }], { ok: sha("x") }, UnsafeBundleError);
    await refuses([{ name: "a/../../evil", content: "x" }], {}, UnsafeBundleError);
  });

  test("refuses an absolute path", async () => {
    await refuses([{ name: join(work, "abs-evil"), content: "x" }], {}, UnsafeBundleError);
    expect(existsSync(join(work, "abs-evil"))).toBe(false);
  });

  test("refuses a symlink leading outside, and writing through an inside symlink", async () => {
    await refuses([{ name: "out", type: "symlink", linkname: "../../.." }], {}, UnsafeBundleError);
    await refuses([{ name: "out", type: "symlink", linkname: "/etc" }], {}, UnsafeBundleError);
    await refuses([{ name: "sub/up", type: "symlink", linkname: "../../x" }], {}, UnsafeBundleError);
    await refuses(
      [{ name: "d", type: "directory" }, { name: "lnk", type: "symlink", linkname: "d" }, { name: "lnk/f", content: "x" }],
      { "lnk/f": sha("x") },
      UnsafeBundleError,
    );
  });

  test("refuses a symlink whose target passes through another symlink (chains that escape)", async () => {
    // `up` resolves to the app dir itself; `esc`'s text normalises to "etc" (inside), but the
    // kernel walks it through `up` and lands four levels above the app dir.
    const chain = [
      { name: "a/b/c/up", type: "symlink" as const, linkname: "../../.." },
      { name: "esc", type: "symlink" as const, linkname: "a/b/c/up/../../../../etc" },
    ];
    await refuses(chain, {}, UnsafeBundleError, {}, 'passes through the symlink "a/b/c/up"');
    // The same two links in the other order: the later link would turn a path the earlier one walks through into a symlink.
    await refuses([chain[1]!, chain[0]!], {}, UnsafeBundleError);
  });

  test("allows a symlink that stays inside the app dir", async () => {
    const { dest } = fresh();
    const bundle = write(await tgz([{ name: "conf/a.conf", content: "A" }, { name: "current.conf", type: "symlink", linkname: "conf/a.conf" }]));
    await extractBundle({ bundle, index: { "conf/a.conf": sha("A") }, dest });
    expect(lstatSync(join(dest, "current.conf")).isSymbolicLink()).toBe(true);
    expect(readFileSync(join(dest, "current.conf"), "utf8")).toBe("A");
  });

  test("refuses a hard link leading outside", async () => {
    await refuses([{ name: "hl", type: "link", linkname: "../../../etc/passwd" }], { hl: sha("x") }, UnsafeBundleError);
    await refuses([{ name: "hl", type: "link", linkname: "/etc/passwd" }], { hl: sha("x") }, UnsafeBundleError);
    // a hard link to something not extracted by this bundle (could exist in the temp dir's parent)
    await refuses([{ name: "hl", type: "link", linkname: "sentinel" }], { hl: sha("keep") }, UnsafeBundleError);
  });

  test("allows a hard link to a checked file of the bundle when the index lists it", async () => {
    const { dest } = fresh();
    const bundle = write(await tgz([{ name: "a", content: "A" }, { name: "b", type: "link", linkname: "a" }]));
    await extractBundle({ bundle, index: { a: sha("A"), b: sha("A") }, dest });
    expect(readFileSync(join(dest, "b"), "utf8")).toBe("A");
  });

  test("refuses device nodes and fifos", async () => {
    await refuses([{ name: "null", type: "character-device" }], {}, UnsafeBundleError);
    await refuses([{ name: "sda", type: "block-device" }], {}, UnsafeBundleError);
    await refuses([{ name: "pipe", type: "fifo" }], {}, UnsafeBundleError);
  });

  test("refuses a file over the size cap, including one whose header claims 2 GiB", async () => {
    await refuses([{ name: "big", content: "x".repeat(2048) }], { big: sha("x".repeat(2048)) }, UnsafeBundleError, { maxFileSize: 1024 });
    const { parent, dest } = fresh();
    const t0 = Date.now();
    await expect(extractBundle({ bundle: write(claimingTgz("huge", 2 * 1024 ** 3)), index: { huge: sha("") }, dest })).rejects.toThrow(UnsafeBundleError);
    expect(Date.now() - t0).toBeLessThan(2000);
    expectUntouched(parent);
  });

  test("refuses the reserved .fioup dir", async () => {
    await refuses([{ name: ".fioup/images.yml", content: "x" }], { ".fioup/images.yml": sha("x") }, UnsafeBundleError);
  });

  test("refuses a file whose content differs from the index", async () => {
    await refuses([{ name: "docker-compose.yml", content: "tampered" }], { "docker-compose.yml": sha("original") }, BundleIndexMismatchError);
  });

  test("refuses a file the index does not list", async () => {
    await refuses([{ name: "docker-compose.yml", content: "a" }, { name: "extra", content: "b" }], { "docker-compose.yml": sha("a") }, BundleIndexMismatchError);
  });

  test("refuses an index that lists a file absent from the bundle", async () => {
    await refuses([{ name: "docker-compose.yml", content: "a" }], { "docker-compose.yml": sha("a"), "missing.conf": sha("b") }, BundleIndexMismatchError);
  });

  test("refuses a duplicate entry (a second copy could differ from the checked one)", async () => {
    await refuses([{ name: "a", content: "A" }, { name: "a", content: "A" }], { a: sha("A") }, UnsafeBundleError);
  });

  test("refuses a bundle that is not a gzipped tar, or an index that is not path → digest", async () => {
    const { parent, dest } = fresh();
    await expect(extractBundle({ bundle: write(new TextEncoder().encode("not gzip at all")), index: {}, dest })).rejects.toThrow(InvalidComposeBundleError);
    const truncated = (await tgz([{ name: "a", content: "A".repeat(5000) }])).slice(0, 40);
    await expect(extractBundle({ bundle: write(truncated), index: { a: sha("A".repeat(5000)) }, dest })).rejects.toThrow(InvalidComposeBundleError);
    await expect(extractBundle({ bundle: write(await tgz([])), index: { a: "md5:x" }, dest })).rejects.toThrow(InvalidComposeBundleError);
    await expect(extractBundle({ bundle: write(await tgz([])), index: { "../a": sha("") }, dest })).rejects.toThrow(UnsafeBundleError);
    expectUntouched(parent);
  });
});

test("the extracted tree is on disk before it is renamed into place, and the rename after it (strace)", async () => {
  // What a power cut needs: every file's content (beforeCommit's too) and every directory synced
  // before the temp dir becomes the app dir, then the parent synced. Seen from the real process's
  // system calls: fsync of each path before the rename, fsync of the parent after it.
  const { parent, dest } = fresh();
  const bundle = write(await tgz([{ name: "docker-compose.yml", content: "services: {}" }, { name: "conf/a.conf", content: "A" }]));
  const index = { "docker-compose.yml": sha("services: {}"), "conf/a.conf": sha("A") };
  const script = join(work, "extract-traced.ts");
  writeFileSync(
    script,
    `import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { extractBundle } from ${JSON.stringify(join(import.meta.dir, "extract.ts"))};
await extractBundle({ bundle: ${JSON.stringify(bundle)}, index: ${JSON.stringify(index)}, dest: ${JSON.stringify(dest)}, beforeCommit: async (dir) => {
  mkdirSync(join(dir, ".fioup"));
  writeFileSync(join(dir, ".fioup", "app.json"), "{}");
} });
`,
  );
  const p = Bun.spawnSync(["strace", "-f", "-qq", "-y", "-e", "trace=fsync,rename,renameat,renameat2", process.execPath, script], { stderr: "pipe", stdout: "pipe" });
  const trace = p.stderr.toString();
  expect(p.exitCode, trace.slice(-2000)).toBe(0);
  const lines = trace.split("\n");
  const renamedAt = lines.findIndex((l) => /rename/.test(l) && l.includes(`"${dest}"`) && l.includes(".app.extract-"));
  expect(renamedAt, trace.slice(-3000)).toBeGreaterThan(-1);
  const synced = (path: RegExp, from: number, to: number) => lines.slice(from, to).some((l) => /fsync\(\d+</.test(l) && path.test(l));
  for (const f of ["docker-compose.yml", "conf/a.conf", "conf", ".fioup/app.json", ".fioup"]) {
    expect({ f, synced: synced(new RegExp(`\\.app\\.extract-[^/>]+/${f.replace(/\./g, "\\.")}>`), 0, renamedAt) }).toEqual({ f, synced: true });
  }
  expect(synced(new RegExp(`\\.app\\.extract-[^/>]+>`), 0, renamedAt)).toBe(true); // the tree's root
  expect(synced(new RegExp(`<${parent.replace(/[.]/g, "\\.")}>`), renamedAt, lines.length)).toBe(true);
  expect(readFileSync(join(dest, "conf/a.conf"), "utf8")).toBe("A");
}, 30_000);
