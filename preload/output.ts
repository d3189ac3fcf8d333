/**
 * Turns an assembled root filesystem tree into what the factory flashes: the
 * directory itself, a tar, or an ext4 image built without mounting
 * (`mkfs.ext4 -d`, so no root privileges or loop devices are needed).
 *
 * @module
 */
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { DEFAULT_DEVICE_PATHS, preloadedTargetPath } from "../lib/device/paths.ts";

export type OutputFormat = "dir" | "tar" | "ext4";

export class OutputError extends Error {
  override name = "OutputError";
}

async function run(cmd: string[], what: string): Promise<void> {
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const [code, err] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
  if (code !== 0) throw new OutputError(`${what} failed (${cmd[0]} exit ${code}): ${err.trim().split("\n").slice(-3).join(" ")}`);
}

/** Total bytes of regular files under dir, and the number of entries. */
export async function treeSize(dir: string): Promise<{ bytes: number; entries: number }> {
  let bytes = 0;
  let entries = 0;
  for (const name of await readdir(dir, { recursive: true })) {
    const s = await stat(join(dir, name)).catch(() => undefined);
    entries++;
    if (s?.isFile()) bytes += s.size;
  }
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
 * Writes `tree` to `out` in the given format. For "dir" the tree is moved into
 * place; for "tar" and "ext4" the tree is left as it is and the caller removes it.
 */
export async function writeOutput(tree: string, out: string, format: OutputFormat): Promise<void> {
  await mkdir(dirname(out), { recursive: true });
  if (format === "dir") {
    await rm(out, { recursive: true, force: true });
    await rename(tree, out);
    return;
  }
  const tmp = `${out}.partial`;
  await rm(tmp, { force: true });
  if (format === "tar") {
    // GNU tar with numeric owners: the image is for another machine.
    await run(["tar", "--numeric-owner", "--sort=name", "-C", tree, "-cf", tmp, "."], "Writing the tar");
  } else {
    const { bytes, entries } = await treeSize(tree);
    // Room for metadata: 4 KiB per entry, 20% slack, at least 64 MiB.
    const sizeKiB = Math.max(64 * 1024, Math.ceil(((bytes + entries * 4096) * 1.2) / 1024));
    await run(["mkfs.ext4", "-q", "-F", "-L", "rootfs", "-E", "root_owner=0:0", "-d", tree, tmp, `${sizeKiB}K`], "Building the ext4 image");
  }
  await rename(tmp, out);
}
