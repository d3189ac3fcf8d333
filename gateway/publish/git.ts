/**
 * What publish needs from the containers repo's git checkout: the commit (for
 * `containers-sha` and the image/app tags) and whether the tree is dirty (a
 * dirty tree must not reuse images already pushed for that commit).
 *
 * @module
 */

export class GitError extends Error {
  override name = "GitError";
}

export interface GitInfo {
  sha: string;
  shortSha: string;
  /** Uncommitted changes under the checkout. */
  dirty: boolean;
}

async function git(dir: string, args: string[]): Promise<string> {
  let proc;
  try {
    proc = Bun.spawn(["git", "-C", dir, ...args], { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  } catch (cause) {
    throw new GitError(`Cannot run git in ${dir}`, { cause });
  }
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new GitError(`Cannot run git ${args.join(" ")} in ${dir}: ${err.trim() || `exit code ${code}`}`);
  return out.trim();
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
