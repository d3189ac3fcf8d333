/**
 * Swapping two paths in one step, so that neither is ever missing: Linux's renameat2 with
 * RENAME_EXCHANGE (since 3.15; glibc 2.28), which Node's fs does not offer. Replacing a folder
 * with two renames (old aside, new in place) leaves a moment with nothing at its path, and a
 * program that starts in that moment (a gateway making a fresh data dir) finds it empty.
 *
 * Reached through bun:ffi (which works in `bun build --compile` binaries too). Where the call
 * cannot be made (no glibc, an old kernel, a file system without the flag) or fails, the answer
 * is "not swapped" and nothing has changed: the caller falls back to two renames, whose errors
 * Node's fs reports with their errno and path (errno is not read back through bun:ffi, where
 * the runtime may set it again between two calls).
 *
 * @module
 */
/** RENAME_EXCHANGE from linux/fs.h. */
const RENAME_EXCHANGE = 2;
/** AT_FDCWD: paths relative to the working directory. */
const AT_FDCWD = -100;

type Renameat2 = (olddirfd: number, oldpath: Uint8Array, newdirfd: number, newpath: Uint8Array, flags: number) => number;
let renameat2: Renameat2 | null | undefined;

/** glibc's renameat2, or null where it cannot be had. */
async function load(): Promise<Renameat2 | null> {
  if (renameat2 !== undefined) return renameat2;
  if (process.platform !== "linux") return (renameat2 = null);
  try {
    const { dlopen, FFIType } = await import("bun:ffi");
    const lib = dlopen("libc.so.6", {
      renameat2: { args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
    });
    renameat2 = (a, b, c, d, e) => lib.symbols.renameat2(a, b, c, d, e);
  } catch {
    renameat2 = null;
  }
  return renameat2;
}

const cPath = (path: string) => new TextEncoder().encode(`${path}\0`);

/**
 * Swaps what is at `a` and at `b` (both must exist, on one file system) in one system call.
 *
 * @example
 * ```ts
 * if (!(await exchangePaths(restored, dataDir))) { await rename(dataDir, aside); await rename(restored, dataDir); }
 * ```
 * @returns true when swapped; false when not (nothing changed).
 */
export async function exchangePaths(a: string, b: string): Promise<boolean> {
  const call = await load();
  return call !== null && call(AT_FDCWD, cPath(a), AT_FDCWD, cPath(b), RENAME_EXCHANGE) === 0;
}
