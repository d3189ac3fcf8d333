/**
 * Real files for delta tests and benchmarks: the first `bytes` of regular files under
 * /usr/lib/x86_64-linux-gnu (shared libraries, sorted by path, each under 8 MB, no symlinks), as an image
 * layer's file map, plus ways to change them as a release would.
 *
 * @module
 */
import { lstatSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { ImageFile } from "../harness/images.ts";

export const REAL_FILES_ROOT = "/usr/lib/x86_64-linux-gnu";

/** Paths (relative to {@link REAL_FILES_ROOT}) of real files adding up to just over `bytes`, sorted. */
export function realFilePaths(bytes: number, root = REAL_FILES_ROOT): string[] {
  const out: string[] = [];
  let total = 0;
  const walk = (dir: string, rel: string): boolean => {
    for (const name of readdirSync(dir).sort()) {
      const abs = join(dir, name);
      // lstat: symlinks are skipped, so a copy never writes through one into the system's files.
      const st = lstatSync(abs, { throwIfNoEntry: false });
      if (!st) continue;
      const r = rel ? `${rel}/${name}` : name;
      if (st.isDirectory()) {
        if (walk(abs, r)) return true;
      } else if (st.isFile() && st.size < 8 << 20) {
        out.push(r);
        total += st.size;
        if (total > bytes) return true;
      }
    }
    return false;
  };
  walk(root, "");
  return out;
}

/** The files as an image layer under `/data/lib/...`. */
export function realFiles(paths: string[], root = REAL_FILES_ROOT): Record<string, ImageFile> {
  return Object.fromEntries(paths.map((p) => [`/data/lib/${p}`, readFileSync(join(root, p))]));
}

/** The path of the file closest to `size` bytes. */
export function fileNear(paths: string[], size: number, root = REAL_FILES_ROOT): string {
  return paths.map((p) => ({ p, d: Math.abs(statSync(join(root, p)).size - size) })).sort((a, b) => a.d - b.d)[0]!.p;
}

