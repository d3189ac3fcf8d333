/**
 * Whether a path a user named can be used, asked before any work starts: a file to write (a
 * backup, a key) needs a folder that exists and can be written, and a file or folder to read must
 * be there and readable, and of the right kind. The answer is a reason in words that names the
 * user's path ("the folder b/nodir does not exist", "afile is a file, not a folder"), so the
 * error never names a temp file beside it or a bare errno. Each caller wraps the reason in its
 * own error (bad usage, a backup error) and its own first words. And an output folder a command
 * fills is put back as it was found when the work fails or is stopped (emptyStart, putBackEmpty),
 * with the folders above it that the command made (removeMadeFolders).
 *
 * @module
 */
import { constants, readdirSync, rmdirSync, rmSync, statSync, type Stats } from "node:fs";
import { access, readdir, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fsWhy } from "./why.ts";

/** What is at `path`: its stat, undefined if nothing is, "blocked" if a folder above it is a file. */
export async function look(path: string): Promise<Stats | undefined | "blocked"> {
  try {
    return await stat(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    if (code === "ENOTDIR") return "blocked";
    throw e;
  }
}

/** Why nothing can be at `path`: which of the folders above it is a file. */
export async function blockedBy(path: string): Promise<string> {
  for (let p = dirname(path); p !== dirname(p); p = dirname(p)) {
    const st = await look(p).catch(() => undefined);
    if (st && st !== "blocked" && !st.isDirectory()) return `${p} is a file, not a folder`;
  }
  return "a folder above it is a file";
}

/**
 * Why a file cannot be written at `path` (made, or replaced if one is there), or undefined if it
 * can: its folder must exist (a mistyped path is not created: what it would hold could be lost)
 * and be writable, and `path` must not be a folder.
 *
 * @example
 * ```ts
 * const why = await whyCannotWrite(flags.out);
 * if (why) throw new UsageError(`Cannot write --out ${flags.out}: ${why}`);
 * ```
 */
export async function whyCannotWrite(path: string): Promise<string | undefined> {
  const folder = dirname(path);
  try {
    const target = await look(path);
    if (target === "blocked") return await blockedBy(path);
    if (target?.isDirectory()) return `${path} is a folder, give a file name`;
    const parent = await look(folder);
    if (parent === undefined) return `the folder ${folder} does not exist`;
    if (parent === "blocked" || !parent.isDirectory()) return await blockedBy(path);
  } catch (e) {
    return fsWhy(e);
  }
  return whyFolderNotWritable(folder);
}

/** Why files cannot be made in the existing folder `dir` (a read-only file system, no permission), or undefined if they can. */
export function whyFolderNotWritable(dir: string): Promise<string | undefined> {
  return access(dir, constants.W_OK | constants.X_OK).then(
    () => undefined,
    (e) => ((e as NodeJS.ErrnoException).code === "EROFS" ? `the file system of ${dir} is read-only` : `the folder ${dir} is not writable`),
  );
}

/**
 * Why `path` cannot be read as a `kind` ("file" or "directory"; either if not given), or
 * undefined if it can.
 *
 * @example
 * ```ts
 * const why = await whyCannotRead(flags.bundle, "directory");
 * if (why) throw new UsageError(`Cannot read --bundle ${flags.bundle}: ${why}`);
 * ```
 */
export async function whyCannotRead(path: string, kind?: "file" | "directory"): Promise<string | undefined> {
  try {
    const st = await stat(path);
    await access(path, constants.R_OK);
    if (kind === "file" && st.isDirectory()) return "it is a directory";
    if (kind === "directory" && !st.isDirectory()) return "it is a file, give a directory";
    return undefined;
  } catch (e) {
    return (e as NodeJS.ErrnoException)?.code === "ENOENT" && kind === "directory" ? "no such directory" : fsWhy(e);
  }
}

/**
 * Why `dir` cannot be made or filled as a new folder, or undefined if it can: it must be absent
 * (its parent folder existing and writable: a mistyped path is not created) or an empty folder.
 * Asked before any work, so a folder in use is bad usage, not a failure half-way.
 *
 * @example
 * ```ts
 * const why = await whyCannotFill(flags.out);
 * if (why) throw new UsageError(`Cannot write into --out ${flags.out}: ${why}`);
 * ```
 */
export async function whyCannotFill(dir: string): Promise<string | undefined> {
  try {
    const st = await look(dir);
    if (st === undefined || st === "blocked") return await whyCannotWrite(dir);
    if (!st.isDirectory()) return `${dir} is a file, give a folder`;
    if ((await readdir(dir)).length) return `${dir} is not empty (give a new or empty folder)`;
    return await access(dir, constants.W_OK | constants.X_OK).then(
      () => undefined,
      () => `the folder ${dir} is not writable`,
    );
  } catch (e) {
    return fsWhy(e);
  }
}

/**
 * How a folder a command is about to fill stands before it starts: "missing", "empty", or
 * undefined (it holds something, or is a file). What {@link putBackEmpty} restores when the work
 * fails or is stopped, so the same path can be given again at once.
 */
export function emptyStart(path: string): "missing" | "empty" | undefined {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st) return "missing";
  return st.isDirectory() && readdirSync(path).length === 0 ? "empty" : undefined;
}

/**
 * Puts `path` back as {@link emptyStart} found it: removed if it was missing, emptied if it was an
 * empty folder. Synchronous, so a signal handler can run it before the process exits.
 */
export function putBackEmpty(path: string, was: "missing" | "empty"): void {
  if (was === "missing") rmSync(path, { recursive: true, force: true });
  else for (const name of readdirSync(path)) rmSync(join(path, name), { recursive: true, force: true });
}

/**
 * Removes the folders `mkdir -p` made on the way to `deepest`, from it up to `top` (what mkdir
 * returned: the first folder it made; undefined: it made none), as far as they are empty, so a run
 * that wrote nothing there leaves no new empty folders behind. A folder that is not empty (someone
 * else's files, or what the run kept) stays, and so do those above it. Synchronous: a signal
 * handler calls it too.
 *
 * @example
 * ```ts
 * const made = await mkdir(dirname(out), { recursive: true });
 * try { await work(out); } catch (e) { removeMadeFolders(made, dirname(out)); throw e; }
 * ```
 */
export function removeMadeFolders(top: string | undefined, deepest: string): void {
  if (top === undefined) return;
  for (let d = deepest; ; d = dirname(d)) {
    try {
      rmdirSync(d);
    } catch {
      return;
    }
    if (d === top || d === dirname(d)) return;
  }
}
