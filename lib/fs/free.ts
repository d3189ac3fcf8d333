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
  const fs = await statfs(dir).catch(() => undefined);
  return fs && fs.bavail * fs.bsize;
}
