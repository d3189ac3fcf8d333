import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statfsSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileExistsError, renameDurable, writeFileAtomic, writeFileAtomicSync, writeNewFilesAtomic } from "./atomic-write.ts";

const dir = mkdtempSync(join(tmpdir(), "atomic-write-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe.each([
  ["writeFileAtomic", writeFileAtomic],
  ["writeFileAtomicSync", writeFileAtomicSync],
] as const)("%s", (name, write) => {
  test("replaces the file, creates parents and leaves no temp file behind", async () => {
    const path = join(dir, name, "sub", "f.txt");
    await write(path, "old");
    await write(path, new TextEncoder().encode("new"));
    expect(readFileSync(path, "utf8")).toBe("new");
    expect(readdirSync(join(dir, name, "sub"))).toEqual(["f.txt"]);
  });

  test("gives the new file the mode asked for, whatever the umask", async () => {
    const path = join(dir, name, "secret.key");
    const old = process.umask(0o077);
    try {
      await write(path, "k", { mode: 0o640 });
    } finally {
      process.umask(old);
    }
    expect(statSync(path).mode & 0o777).toBe(0o640);
  });

  test("noReplace refuses to replace an existing file (EEXIST) and keeps it", async () => {
    const path = join(dir, name, "once");
    await write(path, "first", { noReplace: true });
    await expect(Promise.resolve().then(() => write(path, "second", { noReplace: true }))).rejects.toMatchObject({ code: "EEXIST" });
    expect(readFileSync(path, "utf8")).toBe("first");
    expect(readdirSync(join(dir, name)).filter((f) => f.endsWith(".tmp"))).toEqual([]);
  });

  test("a failed write leaves the old file and no temp file", async () => {
    const sub = join(dir, name, "fail");
    await write(join(sub, "f"), "old");
    writeFileSync(join(sub, "dir-in-the-way"), "");
    // the target's parent is a file: the write must fail without touching anything else
    await expect(Promise.resolve().then(() => write(join(sub, "dir-in-the-way", "x"), "new"))).rejects.toThrow();
    expect(readFileSync(join(sub, "f"), "utf8")).toBe("old");
    expect(readdirSync(sub).sort()).toEqual(["dir-in-the-way", "f"]);
  });
});

describe("renameDurable", () => {
  test("moves a finished file over the destination", async () => {
    const src = join(dir, "finished.tmp");
    writeFileSync(src, "blob");
    writeFileSync(join(dir, "blob"), "old");
    await renameDurable(src, join(dir, "blob"));
    expect(readFileSync(join(dir, "blob"), "utf8")).toBe("blob");
    expect(readdirSync(dir)).not.toContain("finished.tmp");
  });
});

describe("writeNewFilesAtomic", () => {
  test("writes a set of new files, each with its mode", async () => {
    const a = join(dir, "pair-a.key"), b = join(dir, "pair-a.pub");
    await writeNewFilesAtomic([{ path: a, data: "private", mode: 0o600 }, { path: b, data: "public" }], "keys");
    expect(readFileSync(a, "utf8")).toBe("private");
    expect(statSync(a).mode & 0o777).toBe(0o600);
    expect(readFileSync(b, "utf8")).toBe("public");
  });

  test("one existing file leaves the whole set unwritten: no half pair", async () => {
    const a = join(dir, "pair-b.key"), b = join(dir, "pair-b.pub");
    writeFileSync(b, "old public");
    const err = await writeNewFilesAtomic([{ path: a, data: "new private" }, { path: b, data: "new public" }], "key files are never overwritten").catch((e) => e);
    expect(err).toBeInstanceOf(FileExistsError);
    expect((err as Error).message).toBe(`Cannot write ${b}: it exists (key files are never overwritten)`);
    expect(readdirSync(dir)).not.toContain("pair-b.key");
    expect(readFileSync(b, "utf8")).toBe("old public");
  });
});

test("writeFileAtomic of a stream on a file system that fills: it fails and the old file stays whole, never a cut-off new one", async () => {
  // A write larger than the space left is written in part (a short write), without an error; the
  // error comes only at the next write. The last chunk's short write must not pass for the whole.
  const mnt = join(dir, "small-fs");
  mkdirSync(mnt);
  expect(Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt]).exitCode).toBe(0);
  try {
    const path = join(mnt, "backup.bin");
    await writeFileAtomic(path, "old");
    const free = statfsSync(mnt).bavail * statfsSync(mnt).bsize;
    expect(Bun.spawnSync(["fallocate", "-l", String(free - 64 * 1024), join(mnt, "filler")]).exitCode).toBe(0);
    async function* stream() {
      yield new Uint8Array(16 * 1024); // fits
      yield new Uint8Array(256 * 1024); // the last chunk: only part of it fits
    }
    await expect(writeFileAtomic(path, stream())).rejects.toMatchObject({ code: "ENOSPC" });
    expect(readFileSync(path, "utf8")).toBe("old");
    expect(readdirSync(mnt).sort()).toEqual(["backup.bin", "filler"]);
  } finally {
    Bun.spawnSync(["umount", mnt]);
  }
});
