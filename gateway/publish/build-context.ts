/**
 * A build's context as publish takes an app: without what git ignores. `docker build DIR` sends
 * everything under DIR to the engine, and a `COPY . .` bakes it into the image that every device
 * then runs: a developer's git-ignored `.env`, keys, `node_modules`. Bundles already leave those
 * out (./discover.ts); a context that holds ignored paths is built from a copy of the rest (what
 * git tracks, and untracked files it does not ignore, which make the tree dirty and are said so),
 * in the publish's temp dir. A context without ignored paths, the usual case, is built where it is.
 *
 * The context's `.dockerignore` still applies, as docker reads it from the copy: it can leave out
 * more. It is also the one way to keep a path git ignores: one its `!` lines name (`!dist/`), a
 * file a CI step makes before publish runs (a compiled binary, a web bundle) and the Dockerfile
 * copies. Named itself, or an ignored folder it is in: a `!src` that brings back a tracked folder
 * does not bring back the ignored files in it, a developer's `src/config.local.json`. A `.dockerignore` that excludes nothing by itself (`!dist/` alone) is allowed by docker,
 * so naming such a path costs nothing else. The file read is the one BuildKit reads:
 * `<Dockerfile>.dockerignore` beside the Dockerfile if there is one, else the context's
 * `.dockerignore`; one git ignores is not read, as the copy lacks it.
 *
 * @module
 */
import { copyFile, cp, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, symlink } from "node:fs/promises";
import { basename, dirname, join, relative, sep } from "node:path";
import { parseIgnoreFile, pathListMatcher, type IgnoreFileMatcher } from "../../lib/compose/ignore.ts";
import { ignoredPaths, publishedPaths } from "./git.ts";

export interface BuildContext {
  /** The folder to give `docker build`. */
  dir: string;
  /** The ignored paths left out, relative to the context (a wholly ignored folder once, with a trailing `/`). */
  leftOut: string[];
  /** Ignored paths kept because the context's `.dockerignore` names them with `!`, relative to the context. */
  kept: string[];
  /** Removes the copy, if one was made. */
  dispose(): Promise<void>;
}

/**
 * The context to build for the folder `dir` of a git checkout: `dir` itself, or a copy under
 * `tmpDir` without the paths git ignores, but those the `.dockerignore` re-includes. Submodules are
 * copied whole; symbolic links stay links.
 *
 * @example
 * ```ts
 * const ctx = await buildContext("containers/api", tmp);
 * try { await dockerBuild(ctx.dir, tag); } finally { await ctx.dispose(); }
 * ```
 * @param dockerfile The Dockerfile's absolute path, when not `<dir>/Dockerfile`.
 * @throws {GitError} If `dir` is not in a git work tree.
 * @throws {IgnorePatternError} If the `.dockerignore` has a malformed pattern.
 */
export async function buildContext(dir: string, tmpDir: string, dockerfile?: string): Promise<BuildContext> {
  const ignored = await ignoredPaths(dir);
  if (ignored.length === 0) return { dir, leftOut: [], kept: [], dispose: async () => {} };
  const dockerIgnore = await readDockerIgnore(dir, dockerfile ?? join(dir, "Dockerfile"));
  const { kept, leftOut } = dockerIgnore?.hasNegations ? await sortIgnored(dir, ignored, dockerIgnore) : { kept: [], leftOut: ignored };
  if (leftOut.length === 0) return { dir, leftOut, kept, dispose: async () => {} };
  const copy = await mkdtemp(join(tmpDir, "build-context-"));
  try {
    for (const path of [...(await publishedPaths(dir)), ...kept]) {
      const from = join(dir, path);
      const to = join(copy, path);
      const st = await lstat(from).catch(() => undefined);
      if (!st) continue; // tracked, deleted in the work tree: not in the context docker would send either
      await mkdir(dirname(to), { recursive: true });
      if (st.isSymbolicLink()) await symlink(await readlink(from), to);
      else if (st.isDirectory()) await cp(from, to, { recursive: true, verbatimSymlinks: true }); // a submodule, or a kept folder
      else await copyFile(from, to); // keeps the mode: an executable stays executable in the image
    }
  } catch (e) {
    await rm(copy, { recursive: true, force: true });
    throw e;
  }
  return { dir: copy, leftOut, kept, dispose: () => rm(copy, { recursive: true, force: true }) };
}

/** The ignore file docker reads for this build, as BuildKit picks it, unless git ignores it. */
async function readDockerIgnore(dir: string, dockerfile: string): Promise<IgnoreFileMatcher | undefined> {
  for (const file of [`${dockerfile}.dockerignore`, join(dir, ".dockerignore")]) {
    const text = await readFile(file, "utf8").catch(() => undefined);
    if (text === undefined) continue;
    if (pathListMatcher(await ignoredPaths(dirname(file))).ignores(basename(file))) return undefined;
    return parseIgnoreFile(text, file);
  }
  return undefined;
}

/**
 * Splits what git ignores into what the `.dockerignore` keeps and what is left out. A path is kept
 * when a `!` line matches it or an ignored folder it is in (`!dist` for a folder git ignores
 * whole), and no later line excludes it; a `!` line naming a folder git does not ignore (`!src`)
 * keeps none of the ignored files in it, which may be a developer's. A wholly ignored folder is
 * kept whole, else walked for the files kept; one none of whose files is kept is left out once.
 */
async function sortIgnored(dir: string, ignored: string[], m: IgnoreFileMatcher): Promise<{ kept: string[]; leftOut: string[] }> {
  const keeps = (path: string, entry: string): boolean => {
    if (m.ignores(path)) return false;
    for (let p = path; ; p = p.slice(0, p.lastIndexOf("/"))) {
      if (m.negates(p)) return true;
      if (p === entry) return false;
    }
  };
  const kept: string[] = [];
  const leftOut: string[] = [];
  for (const listed of ignored) {
    const entry = listed.replace(/\/$/, "");
    if (keeps(entry, entry)) kept.push(listed);
    else if (listed === entry) leftOut.push(listed);
    else {
      const files = (await readdir(join(dir, entry), { recursive: true, withFileTypes: true }))
        .filter((d) => !d.isDirectory())
        .map((d) => relative(dir, join(d.parentPath, d.name)).replaceAll(sep, "/"))
        .sort();
      const some = new Set(files.filter((f) => keeps(f, entry)));
      kept.push(...some);
      leftOut.push(...(some.size === 0 ? [listed] : files.filter((f) => !some.has(f))));
    }
  }
  return { kept, leftOut };
}
