/**
 * The room left on the file system holding a folder, for the checks that refuse a write before
 * it starts (a backup, a preload image, its blob cache, an update's downloads) and for saying why a
 * write failed (fioup.db on a full disk): a full disk is then said with the sizes at stake, not as
 * ENOSPC half way through. One reckoning of statfs for all of them.
 *
 * Most file systems (ext4: 5% by default) keep blocks that only root may write into. An
 * unprivileged writer's room leaves them out (freeBytes, fileSystemSpace); a process that runs as
 * root and must say what it itself may still write (fioup.db on a full disk) asks spaceOf with
 * `asThisProcess` and counts them.
 *
 * @module
 */
import type { StatsFs } from "node:fs";
import { statfs } from "node:fs/promises";

/** The room on one file system, in bytes. */
export interface FileSystemSpace {
  /** What may still be written: by an unprivileged writer, or (spaceOf with `asThisProcess`) by this process. */
  free: number;
  /** The size of the whole file system. */
  size: number;
  /** Its block size. */
  blockSize: number;
}

export interface SpaceOptions {
  /** Count the room this process may use: run as root, the blocks reserved for root too (root may write into them). */
  asThisProcess?: boolean;
}

/** Bytes an unprivileged writer may still use on the file system holding `dir`; undefined when it cannot be told (the write itself will then say what is wrong). */
export async function freeBytes(dir: string): Promise<number | undefined> {
  return (await fileSystemSpace(dir))?.free;
}

/** What {@link freeBytes} gives, and the size of the whole file system; undefined when it cannot be told. */
export async function fileSystemSpace(dir: string): Promise<FileSystemSpace | undefined> {
  const fs = await statfs(dir).catch(() => undefined);
  return fs && spaceOf(fs);
}

/**
 * The room {@link fileSystemSpace} reads from a statfs result, for a caller that calls statfs
 * itself (synchronously, or failing where the file system cannot be measured).
 *
 * @example
 * ```ts
 * spaceOf(statfsSync("/var/sota"), { asThisProcess: true }).free; // what fioup, root, may still write there
 * ```
 */
export function spaceOf(fs: StatsFs, opts: SpaceOptions = {}): FileSystemSpace {
  const available = opts.asThisProcess && process.getuid?.() === 0 ? fs.bfree : fs.bavail;
  // Some FUSE file systems report a block size of 0: counted as 4 KiB, not as a disk with no room.
  const bsize = Number(fs.bsize) || 4096;
  return { free: available * bsize, size: fs.blocks * bsize, blockSize: bsize };
}
