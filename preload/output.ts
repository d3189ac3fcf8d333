/**
 * Turns an assembled root filesystem tree into what the factory flashes: the
 * directory itself, a tar, or an ext4 image built without mounting
 * (`mkfs.ext4 -d`, so no root privileges or loop devices are needed).
 *
 * @module
 */
import { lstat, mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { sizeText } from "../lib/cli/bytes.ts";
import { dirname, join } from "node:path";
import { DEFAULT_DEVICE_PATHS, preloadedTargetPath } from "../lib/device/paths.ts";
import { blockedBy, look, whyFolderNotWritable } from "../lib/fs/paths.ts";
import { freeBytes } from "../lib/fs/free.ts";
import { runTool } from "./_children.ts";

export type OutputFormat = "dir" | "tar" | "ext4";

export class OutputError extends Error {
  override name = "OutputError";
}

async function run(cmd: string[], what: string): Promise<void> {
  const { code, stderr } = await runTool(cmd);
  if (code !== 0) throw new OutputError(`${what} failed (${cmd[0]} exit ${code}): ${stderr}`);
}

/**
 * Total bytes of regular files under dir (a hard-linked file once), and the number of entries.
 * Symbolic links are entries, never followed: a base rootfs holds links like /dev/fd -> /proc/self/fd
 * that lead out of the tree or round in a loop.
 */
export async function treeSize(dir: string): Promise<{ bytes: number; entries: number }> {
  let bytes = 0;
  let entries = 0;
  const seen = new Set<number>();
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      entries++;
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) {
        const s = await lstat(p);
        if (s.nlink > 1 && seen.has(s.ino)) continue;
        if (s.nlink > 1) seen.add(s.ino);
        bytes += s.size;
      }
    }
  };
  await walk(dir);
  return { bytes, entries };
}

/** The file that marks a tree as a preload image (the preloaded target), relative to the image root. */
const PRELOADED_TARGET = preloadedTargetPath(DEFAULT_DEVICE_PATHS.storagePath).replace(/^\/+/, "");

/** Whether the tar or ext4 file `out` is an earlier preload image, read without unpacking or mounting it. */
async function holdsPreloadImage(out: string, format: "tar" | "ext4"): Promise<boolean> {
  const cmd = format === "tar" ? ["tar", "-tf", out, `./${PRELOADED_TARGET}`] : ["debugfs", "-R", `stat /${PRELOADED_TARGET}`, out];
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "ignore" });
  const [code, text] = await Promise.all([proc.exited, new Response(proc.stdout).text()]);
  // debugfs exits 0 whether or not it found the file; its stat prints the inode when it did.
  return code === 0 && (format === "tar" || /^Inode:/m.test(text));
}

/**
 * Refuses an output path whose current contents would be lost: a directory
 * that is neither empty nor an earlier preload image (`--out /` must never
 * mean "replace the root filesystem"), a directory where a file goes, or a
 * file (or device) that is neither empty nor an earlier image of the same format.
 *
 * @throws {OutputError}
 */
export async function checkOutputPath(out: string, format: OutputFormat): Promise<void> {
  const s = await stat(out).catch(() => undefined);
  if (!s) return;
  if (format !== "dir") {
    if (s.isDirectory()) throw new OutputError(`Cannot write the ${format} image to ${out}: it is a directory`);
    if (!s.isFile()) throw new OutputError(`Cannot write the ${format} image to ${out}: it is not a regular file (nothing was changed)`);
    if (s.size > 0 && !(await holdsPreloadImage(out, format)))
      throw new OutputError(`Cannot write the ${format} image to ${out}: it exists and is no earlier preload ${format} image (nothing was changed)`);
    return;
  }
  if (!s.isDirectory()) throw new OutputError(`Cannot write the image directory to ${out}: a file is in the way`);
  const entries = await readdir(out);
  const earlier = await stat(join(out, PRELOADED_TARGET)).then(() => true, () => false);
  if (entries.length > 0 && !earlier) {
    throw new OutputError(`Cannot write the image directory to ${out}: it is not empty and holds no earlier preload image (nothing was changed)`);
  }
}

/**
 * Why nothing can be written at `out`, or undefined if it can: preload makes the folders above
 * it that are missing, so the nearest one that exists must be a folder preload may write in, on
 * a file system that is not read-only. Asked before the gateway is, so a mistyped or read-only
 * --out fails at once instead of after the download.
 */
export async function whyCannotWriteAt(out: string): Promise<string | undefined> {
  let dir = dirname(out);
  for (;;) {
    const st = await look(dir).catch(() => undefined);
    if (st === "blocked" || (st && !st.isDirectory())) return await blockedBy(out);
    if (st) break;
    if (dir === dirname(dir)) return undefined;
    dir = dirname(dir);
  }
  return await whyFolderNotWritable(dir);
}

/** What preload is about to write does not fit in the free space of its file system. */
export class ImageNoSpaceError extends OutputError {
  override name = "ImageNoSpaceError";
  /** @param detail What needs how much, and how much is free ("the tar file needs at least 1.0 MiB, 96.0 KiB free"). */
  constructor(readonly detail: string) {
    super(`No space left: ${detail}`);
  }
}

/** Where the unfinished tar or ext4 file is written before it is renamed to `out`. */
export const partialPath = (out: string): string => `${out}.partial`;

/**
 * Writes `tree` to `out` in the given format. For "dir" the tree is moved into
 * place (into the folder `out` if it is there, a mount point included); for "tar" and "ext4"
 * the tree is left as it is and the caller removes it.
 */
export async function writeOutput(tree: string, out: string, format: OutputFormat): Promise<void> {
  await mkdir(dirname(out), { recursive: true });
  if (format === "dir") {
    const there = await stat(out).catch(() => undefined);
    if (!there) return await rename(tree, out);
    // An empty folder or an earlier image (checkOutputPath): often the mount point of the
    // device's root partition, which can be neither removed nor renamed onto. Its contents are
    // replaced instead, by rename on the same file system, else copied whole.
    const empty = async () => {
      for (const name of await readdir(out)) await rm(join(out, name), { recursive: true, force: true });
    };
    await empty();
    try {
      for (const name of await readdir(tree)) {
        try {
          await rename(join(tree, name), join(out, name));
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== "EXDEV") throw e;
          const { code, stderr } = await runTool(["cp", "-a", "--reflink=auto", join(tree, name), join(out, name)]);
          if (/No space left|Disk quota/.test(stderr)) throw new ImageNoSpaceError(`the image does not fit in the file system of ${out}`);
          if (code !== 0) throw new OutputError(`Copying the image into ${out} failed (cp exit ${code}): ${stderr}`);
        }
      }
    } catch (e) {
      // Never a half image that looks like one: the folder is left empty, as a fresh --out.
      await empty().catch(() => {});
      throw e;
    }
    return;
  }
  const tmp = partialPath(out);
  await rm(tmp, { force: true });
  // The tar or ext4 file holds at least the tree's bytes: said before the tool fails half-way.
  const { bytes, entries } = await treeSize(tree);
  const free = await freeBytes(dirname(out));
  if (free !== undefined && free < bytes) throw new ImageNoSpaceError(`the ${format} file needs at least ${sizeText(bytes)}, ${sizeText(free)} free`);
  if (format === "tar") {
    // GNU tar with numeric owners: the image is for another machine.
    await run(["tar", "--numeric-owner", "--sort=name", "-C", tree, "-cf", tmp, "."], "Writing the tar");
  } else {
    // Room for metadata: 4 KiB per entry, 20% slack, at least 64 MiB.
    const sizeKiB = Math.max(64 * 1024, Math.ceil(((bytes + entries * 4096) * 1.2) / 1024));
    await run(["mkfs.ext4", "-q", "-F", "-L", "rootfs", "-E", "root_owner=0:0", "-d", tree, tmp, `${sizeKiB}K`], "Building the ext4 image");
  }
  await rename(tmp, out);
}
