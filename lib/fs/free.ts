/**
 * The room left on the file system holding a folder, for the checks that refuse a write before
 * it starts (a backup, a preload image, its blob cache): a full disk is then said with the sizes
 * at stake, not as ENOSPC half way through.
 *
 * @module
 */
import { statfs } from "node:fs/promises";

/** Bytes an unprivileged writer may still use on the file system holding `dir`; undefined when it cannot be told (the write itself will then say what is wrong). */
export async function freeBytes(dir: string): Promise<number | undefined> {
  return (await fileSystemSpace(dir))?.free;
}

/** What {@link freeBytes} gives, and the size of the whole file system; undefined when it cannot be told. */
export async function fileSystemSpace(dir: string): Promise<{ free: number; size: number } | undefined> {
  const fs = await statfs(dir).catch(() => undefined);
  return fs && { free: fs.bavail * fs.bsize, size: fs.blocks * fs.bsize };
}
