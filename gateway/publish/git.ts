/**
 * What publish needs from the containers repo's git checkout: the commit (for
 * `containers-sha` and the image/app tags), whether the tree is dirty (a
 * dirty tree must not reuse images already pushed for that commit), that
 * HEAD is the commit the published ref names, so targets never carry content
 * from another commit than the one their tags claim, and what git ignores:
 * the commit does not hold those files (a developer's `.env`), so publish
 * leaves them out rather than ship what CI would never see. They do not make
 * the tree dirty (`git status` skips them too): what is published then is the
 * commit.
 *
 * @module
 */
import { namedFew } from "../../lib/cli/few.ts";

export class GitError extends Error {
  override name = "GitError";
}

/** HEAD is not the commit `--ref` (or `--commit`) names. */
export class RefMismatchError extends GitError {
  override name = "RefMismatchError";
}

export interface GitInfo {
  sha: string;
  shortSha: string;
  /** Uncommitted changes under the checkout. */
  dirty: boolean;
}

async function git(dir: string, args: string[], opts: { raw?: boolean } = {}): Promise<string> {
  let proc;
  try {
    proc = Bun.spawn(["git", "-C", dir, ...args], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  } catch (cause) {
    throw new GitError(`Cannot run git in ${dir}`, { cause });
  }
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new GitError(`Cannot run git ${args.join(" ")} in ${dir}: ${err.trim() || `exit code ${code}`}`);
  return opts.raw ? out : out.trim();
}

/**
 * Reads HEAD of the checkout at `dir`.
 *
 * @example
 * ```ts
 * const { sha, shortSha } = await gitInfo("containers");
 * ```
 * @throws {GitError} If `dir` is not a git checkout with at least one commit.
 */
export async function gitInfo(dir: string): Promise<GitInfo> {
  const sha = await git(dir, ["rev-parse", "--verify", "HEAD"]);
  const shortSha = await git(dir, ["rev-parse", "--short=7", "HEAD"]);
  const status = await git(dir, ["status", "--porcelain", "--untracked-files=normal"]);
  return { sha, shortSha, dirty: status !== "" };
}

/**
 * What git ignores under the checkout at `dir` and does not track: paths
 * relative to `dir`, a wholly ignored directory once, with a trailing `/`
 * (`.gitignore` files, `.git/info/exclude` and the user's excludes file, as
 * `git status` reads them). A file tracked despite a rule is not listed.
 *
 * @example
 * ```ts
 * await ignoredPaths("containers"); // ["envapp/.env", "web/node_modules/"]
 * ```
 * @throws {GitError} If `dir` is not in a git work tree.
 */
export async function ignoredPaths(dir: string): Promise<string[]> {
  const out = await git(dir, ["ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory"], { raw: true });
  return out.split("\0").filter((p) => p !== "").sort();
}

/**
 * How publish says which ignored paths it left out: how many, the first five and how many more.
 *
 * @example
 * ```ts
 * leftOutText([".env", "local/"]); // "left out 2 paths git ignores, which the commit does not hold: .env, local/"
 * ```
 */
export function leftOutText(paths: string[]): string {
  const n = paths.length;
  return `left out ${n === 1 ? "1 path" : `${n} paths`} git ignores, which the commit does not hold: ${namedFew(paths, 5)}`;
}

/**
 * What publish takes under the checkout at `dir`: the paths git tracks there and the untracked
 * ones it does not ignore (they make the tree dirty), relative to `dir`; a submodule once, as
 * its folder. A tracked file deleted in the work tree is still listed.
 *
 * @example
 * ```ts
 * await publishedPaths("containers/api"); // ["Dockerfile", "src/main.go"]
 * ```
 * @throws {GitError} If `dir` is not in a git work tree.
 */
export async function publishedPaths(dir: string): Promise<string[]> {
  const out = await git(dir, ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], { raw: true });
  return [...new Set(out.split("\0").filter((p) => p !== ""))].sort();
}

/**
 * Checks that HEAD of the checkout is what is being published: the commit
 * `ref` points at in the checkout (`refs/heads/x`, or `refs/remotes/origin/x`
 * in a CI checkout that has only the remote branch), and the commit `commit`
 * names if given (a full or abbreviated hash). `commit` says which commit this
 * is where the checkout has no `ref` (a detached CI checkout); where it has,
 * both must agree.
 *
 * @example
 * ```ts
 * await checkHead("containers", "refs/heads/master", (await gitInfo("containers")).sha);
 * ```
 * @throws {RefMismatchError} If HEAD is another commit, or the ref is not in the checkout and no `commit` is given.
 */
export async function checkHead(dir: string, ref: string, headSha: string, commit?: string): Promise<void> {
  const resolve = async (name: string) => await git(dir, ["rev-parse", "--verify", "--quiet", `${name}^{commit}`]).catch(() => undefined);
  if (commit !== undefined) {
    const want = await resolve(commit);
    if (!want) throw new RefMismatchError(`Cannot publish ${dir}: --commit ${commit} is not a commit of this checkout`);
    if (want !== headSha) throw new RefMismatchError(`Cannot publish ${dir}: HEAD is ${headSha.slice(0, 12)}, but --commit names ${want.slice(0, 12)}; check out ${commit} first`);
  }
  const full = ref.startsWith("refs/") ? ref : `refs/heads/${ref}`;
  const branch = /^refs\/heads\/(.+)$/.exec(full)?.[1];
  const candidates = [full, ...(branch ? [`refs/remotes/origin/${branch}`] : [])];
  for (const c of candidates) {
    const sha = await resolve(c);
    if (sha === undefined) continue;
    if (sha !== headSha && commit !== undefined) {
      // The tags of --ref would name a commit the ref does not point at.
      throw new RefMismatchError(
        `Cannot publish ${dir} as ${ref}: --commit names ${headSha.slice(0, 12)}, but ${c} is ${sha.slice(0, 12)} in this checkout; publish the commit ${ref} points at, or fetch ${ref} so that it points at ${commit}`,
      );
    }
    if (sha !== headSha) {
      throw new RefMismatchError(
        `Cannot publish ${dir} as ${ref}: HEAD is ${headSha.slice(0, 12)}, but ${c} is ${sha.slice(0, 12)}; check out ${ref} (or, if ${c} is out of date, fetch it)`,
      );
    }
    return;
  }
  if (commit !== undefined) return; // a checkout without the ref: --commit said which commit this is
  // A misspelt --ref is the likelier mistake than a checkout without it: say which refs there are.
  const refs = (await git(dir, ["for-each-ref", "--format=%(refname)", "refs/heads", "refs/remotes", "refs/tags"]).catch(() => "")).split("\n").filter((r) => r && !r.endsWith("/HEAD"));
  const shown = namedFew(refs, 10);
  throw new RefMismatchError(
    `Cannot publish ${dir} as ${ref}: the checkout has no ${candidates.join(" or ")} to check HEAD against (${refs.length ? `it has ${shown}` : "it has no branches or tags"}); ` +
      `check the spelling of --ref, or, in a checkout without the ref (a detached CI checkout), pass --commit <sha> to say which commit this is`,
  );
}
