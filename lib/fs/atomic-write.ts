/**
 * Writes a file so that a crash or a power cut leaves the old content or the
 * new one, never half of either: write a temp file in the same directory,
 * fsync it, rename it over the target, then fsync the directory so the rename
 * itself is on disk. The one atomic-write helper of the tree; the sync twin is
 * for code that cannot await (fioup's blob store, registration). A whole tree made in place and
 * then renamed into use (an app's bundle) is made durable by syncTree.
 *
 * @module
 */
import { closeSync, fchmodSync, fsyncSync, linkSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from "node:fs";
import { link, mkdir, open, readdir, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

export interface AtomicWriteOptions {
  /** File mode of the new file (default 0o644), applied whatever the umask. */
  mode?: number;
  /** Fail with EEXIST instead of replacing an existing file (a hard link, not a rename, puts it in place). */
  noReplace?: boolean;
}

const tempName = (path: string) => join(dirname(path), `.${basename(path)}.${process.pid}-${crypto.randomUUID().slice(0, 8)}.tmp`);

/**
 * What a file name is as a write in progress of this module: the name it will take and the PID of
 * its writer (who cleans up a dead writer's temp file needs both), or undefined for any other name.
 */
export function tempFileOf(name: string): { target: string; pid: number } | undefined {
  const m = /^\.(.+)\.([0-9]+)-[0-9a-f]{8}\.tmp$/.exec(name);
  return m ? { target: m[1]!, pid: Number(m[2]) } : undefined;
}
const bytesOf = (data: string | Uint8Array) => (typeof data === "string" ? Buffer.from(data) : data);

/**
 * Replaces `path` with `data` atomically and durably, creating parent directories. `data` may
 * be a stream of chunks (written as they come); if it fails midway the old file stays.
 *
 * @example
 * ```ts
 * await writeFileAtomic("/var/sota/sota.toml", text);
 * await writeFileAtomic("/data/pki/ca.key", keyPem, { mode: 0o600 });
 * ```
 * @throws {NodeJS.ErrnoException} If the directory cannot be created or the file written (the temp file is
 *   removed), or EEXIST with `noReplace` when the file exists.
 */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array | AsyncIterable<Uint8Array>,
  opts: AtomicWriteOptions = {},
): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  const tmp = tempName(path);
  const mode = opts.mode ?? 0o644;
  try {
    const fh = await open(tmp, "wx", mode);
    try {
      if (typeof data === "string" || data instanceof Uint8Array) await fh.writeFile(bytesOf(data));
      else for await (const chunk of data) await writeWhole(fh, chunk); // a stream: memory stays flat
      await fh.chmod(mode); // the umask may have narrowed the mode given to open()
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (opts.noReplace) await link(tmp, path);
    else await rename(tmp, path);
  } finally {
    await rm(tmp, { force: true });
  }
  await syncDir(dir);
}

/**
 * Writes all of `chunk`: one write() may take only part of it (a file system with less room left
 * than the chunk takes what fits, and says ENOSPC only at the next write), and a cut-off last chunk
 * would otherwise be renamed into place as the whole file.
 */
async function writeWhole(fh: Awaited<ReturnType<typeof open>>, chunk: Uint8Array): Promise<void> {
  for (let done = 0; done < chunk.byteLength; ) {
    const { bytesWritten } = await fh.write(chunk, done, chunk.byteLength - done);
    if (bytesWritten <= 0) throw Object.assign(new Error(`write took no bytes of ${chunk.byteLength - done}`), { code: "EIO" });
    done += bytesWritten;
  }
}

/** A file {@link writeNewFilesAtomic} would have replaced; none of the set was written. */
export class FileExistsError extends Error {
  override name = "FileExistsError";
  constructor(
    readonly path: string,
    why: string,
  ) {
    super(`Cannot write ${path}: it exists (${why})`);
  }
}

/**
 * Writes files that belong together (a key pair) and must not replace anything: every path is
 * checked before the first is written, so an existing one leaves the set untouched rather than
 * half old, half new; each then goes in with `noReplace`. `why` says, in the error, why they
 * are never overwritten.
 *
 * @throws {FileExistsError} If any of them exists.
 */
export async function writeNewFilesAtomic(files: { path: string; data: string | Uint8Array; mode?: number }[], why: string): Promise<void> {
  for (const f of files) if (await Bun.file(f.path).exists()) throw new FileExistsError(f.path, why);
  for (const f of files) await writeFileAtomic(f.path, f.data, { ...(f.mode !== undefined ? { mode: f.mode } : {}), noReplace: true });
}

/** Like {@link writeFileAtomic}, but synchronous. */
export function writeFileAtomicSync(path: string, data: string | Uint8Array, opts: AtomicWriteOptions = {}): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true });
  const tmp = tempName(path);
  const mode = opts.mode ?? 0o644;
  try {
    const fd = openSync(tmp, "wx", mode);
    try {
      const bytes = bytesOf(data);
      for (let off = 0; off < bytes.byteLength; ) off += writeSync(fd, bytes, off);
      fchmodSync(fd, mode);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (opts.noReplace) linkSync(tmp, path);
    else renameSync(tmp, path);
  } finally {
    rmSync(tmp, { force: true });
  }
  try {
    const dfd = openSync(dir, "r");
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // some filesystems refuse fsync on a directory: the rename is still atomic
  }
}

/**
 * Moves a finished file (written by the caller, e.g. a verified download) over
 * `dest` durably: fsync the file, rename it, fsync the directory. Both must be
 * on the same filesystem.
 *
 * @example
 * ```ts
 * await renameDurable("/var/sota/reset-apps/ingest/abc.partial", "/var/sota/reset-apps/blobs/sha256/abc");
 * ```
 * @throws {NodeJS.ErrnoException} If the file cannot be opened or renamed.
 */
export async function renameDurable(file: string, dest: string): Promise<void> {
  const fh = await open(file, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(file, dest);
  await syncDir(dirname(dest));
}

/**
 * Makes a tree written in place durable before it is renamed into use (an app's extracted bundle):
 * every regular file's content, then every directory's entries, deepest first. Symbolic links are
 * entries of their directory. A caller then renames the tree and syncs its parent ({@link syncDir}).
 *
 * @throws {NodeJS.ErrnoException} If a file cannot be opened or synced (a directory's fsync refused is not an error, as in syncDir).
 */
export async function syncTree(dir: string): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) await syncTree(path);
    else if (e.isFile()) {
      const fh = await open(path, "r");
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
    }
  }
  await syncDir(dir);
}

/** Makes a rename or a new entry in `dir` durable. Never throws: some filesystems refuse a directory fsync. */
export async function syncDir(dir: string): Promise<void> {
  try {
    const fh = await open(dir, "r");
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // the rename is still atomic; only its durability across a power cut is unknown
  }
}
