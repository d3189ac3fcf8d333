/**
 * Small filesystem helpers for the registry store: "missing is undefined" reads
 * (atomic writes are lib/fs's writeFileAtomic).
 *
 * @module
 */
import { readFile, readdir, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/**
 * Where gc moves a file it is removing (gc.ts takeAside) until it knows no write came in between:
 * a dot file beside it, which no reader takes for a blob, link or tag.
 */
export function asidePath(path: string): string {
  return join(dirname(path), `.${basename(path)}.gc`);
}

/** The name of the file an aside file (asidePath) was moved from, or undefined for any other name. */
export function asideOf(name: string): string | undefined {
  return /^\.(.+)\.gc$/.exec(name)?.[1];
}

export function isNotFound(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === "ENOENT" || code === "ENOTDIR";
}

/** Reads a UTF-8 file, or `undefined` if it does not exist. */
export async function readTextOrUndefined(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** File size, or `undefined` if it is not a regular file. */
export async function fileSize(path: string): Promise<number | undefined> {
  try {
    const st = await stat(path);
    return st.isFile() ? st.size : undefined;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** Directory entries (names), or `[]` if the directory does not exist. */
export async function listDir(path: string): Promise<string[]> {
  try {
    return await readdir(path);
  } catch (err) {
    if (isNotFound(err)) return [];
    throw err;
  }
}

/** Streams a file through sha256 with flat memory; returns the hex digest and byte count. */
export async function hashFile(path: string): Promise<{ hex: string; size: number }> {
  const hasher = new Bun.CryptoHasher("sha256");
  let size = 0;
  for await (const chunk of Bun.file(path).stream()) {
    hasher.update(chunk);
    size += chunk.byteLength;
  }
  return { hex: hasher.digest("hex"), size };
}
