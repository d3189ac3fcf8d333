/**
 * Why a file could not be read or written, in words for a message ("Cannot read X: no such
 * file") rather than an errno and the path again ("ENOENT: no such file or directory, open 'X'").
 *
 * @module
 */

/** The file system is full (ENOSPC), or the user's quota is (EDQUOT), or SQLite found it so (SQLITE_FULL). */
export const isNoSpace = (err: unknown): boolean => ["ENOSPC", "EDQUOT", "SQLITE_FULL"].includes((err as NodeJS.ErrnoException)?.code ?? "");

/**
 * A write this machine refused: no space or quota, a read-only file system, no permission. Doing
 * it again changes nothing until someone acts, so it is said at once, never retried.
 */
export const isLocalWriteRefused = (err: unknown): boolean => isNoSpace(err) || ["EROFS", "EACCES", "EPERM"].includes((err as NodeJS.ErrnoException)?.code ?? "");

/**
 * The reason behind a file system error; any other error's own message.
 *
 * @example
 * ```ts
 * await readFile(path).catch((e) => { throw new Error(`Cannot read ${path}: ${fsWhy(e)}`); });
 * ```
 */
export function fsWhy(err: unknown): string {
  switch ((err as NodeJS.ErrnoException)?.code) {
    case "ENOENT":
      return "no such file";
    case "EISDIR":
      return "it is a directory";
    case "ENOTDIR":
      return "a directory above it is a file";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "ENOSPC":
      return "no space left on the device";
    case "EDQUOT":
      return "over the disk quota";
    case "EROFS":
      return "the file system is read-only";
    default:
      return (err as Error)?.message ?? String(err);
  }
}
