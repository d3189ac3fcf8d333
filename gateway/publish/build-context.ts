/**
 * A build's context as publish takes an app: without what git ignores. `docker build DIR` sends
 * everything under DIR to the engine, and a `COPY . .` bakes it into the image that every device
 * then runs: a developer's git-ignored `.env`, keys, `node_modules`. Bundles already leave those
 * out (./discover.ts); a context that holds ignored paths is built from a copy of the rest (what
 * git tracks, and untracked files it does not ignore, which make the tree dirty and are said so),
 * in the publish's temp dir. A context without ignored paths, the usual case, is built where it is.
 *
 * @module
 */
import { copyFile, cp, lstat, mkdir, mkdtemp, readlink, rm, symlink } from "node:fs/promises";
import { dirname, join } from "node:path";
import { ignoredPaths, publishedPaths } from "./git.ts";

export interface BuildContext {
  /** The folder to give `docker build`. */
  dir: string;
  /** The ignored paths left out, relative to the context (a wholly ignored folder once, with a trailing `/`). */
  leftOut: string[];
  /** Removes the copy, if one was made. */
  dispose(): Promise<void>;
}

/**
 * The context to build for the folder `dir` of a git checkout: `dir` itself, or a copy under
 * `tmpDir` without the paths git ignores. Submodules are copied whole; symbolic links stay links.
 *
 * @example
 * ```ts
 * const ctx = await buildContext("containers/api", tmp);
 * try { await dockerBuild(ctx.dir, tag); } finally { await ctx.dispose(); }
 * ```
 * @throws {GitError} If `dir` is not in a git work tree.
 */
export async function buildContext(dir: string, tmpDir: string): Promise<BuildContext> {
  const leftOut = await ignoredPaths(dir);
  if (leftOut.length === 0) return { dir, leftOut, dispose: async () => {} };
  const copy = await mkdtemp(join(tmpDir, "build-context-"));
  try {
    for (const path of await publishedPaths(dir)) {
      const from = join(dir, path);
      const to = join(copy, path);
      const st = await lstat(from).catch(() => undefined);
      if (!st) continue; // tracked, deleted in the work tree: not in the context docker would send either
      await mkdir(dirname(to), { recursive: true });
      if (st.isSymbolicLink()) await symlink(await readlink(from), to);
      else if (st.isDirectory()) await cp(from, to, { recursive: true, verbatimSymlinks: true }); // a submodule
      else await copyFile(from, to); // keeps the mode: an executable stays executable in the image
    }
  } catch (e) {
    await rm(copy, { recursive: true, force: true });
    throw e;
  }
  return { dir: copy, leftOut, dispose: () => rm(copy, { recursive: true, force: true }) };
}
