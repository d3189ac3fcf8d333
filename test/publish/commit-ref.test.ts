/**
 * `--commit` with `--ref`: where the checkout has the ref, the two must name the same commit
 * (the targets carry the ref's tags); only a checkout without the ref (a detached CI checkout)
 * takes --commit alone as the word for which commit HEAD is.
 */
import { describe, expect, test } from "bun:test";
import { checkHead, RefMismatchError } from "../../gateway/publish/git.ts";
import { commit, containersRepo, git } from "./_setup.ts";

describe("checkHead with --commit", () => {
  test("a ref the checkout has that names another commit than --commit is refused (exit 11), as without --commit", async () => {
    const repo = await containersRepo({ "web/compose.yaml": "services:\n  web:\n    image: nginx:alpine\n" });
    await git(repo, "branch", "old");
    const head = await commit(repo, { "web/compose.yaml": "services:\n  web:\n    image: nginx:1\n" });
    const old = await git(repo, "rev-parse", "refs/heads/old");
    const refused = checkHead(repo, "refs/heads/old", head, head);
    await expect(refused).rejects.toThrow(RefMismatchError);
    await expect(refused).rejects.toThrow(`--commit names ${head.slice(0, 12)}, but refs/heads/old is ${old.slice(0, 12)}`);
    // The remote branch of a CI checkout counts the same way.
    await git(repo, "update-ref", "refs/remotes/origin/release", old);
    await expect(checkHead(repo, "refs/heads/release", head, head.slice(0, 9))).rejects.toThrow("but refs/remotes/origin/release is");
  });

  test("--commit agreeing with the ref, or naming HEAD of a checkout without the ref, is published", async () => {
    const repo = await containersRepo({ "web/compose.yaml": "services:\n  web:\n    image: nginx:alpine\n" });
    const head = await git(repo, "rev-parse", "HEAD");
    await checkHead(repo, "refs/heads/master", head, head);
    await git(repo, "checkout", "-q", "--detach");
    await git(repo, "branch", "-D", "master");
    await checkHead(repo, "refs/heads/master", head, head.slice(0, 7));
    // Without --commit the same checkout is refused: nothing says which commit it is.
    await expect(checkHead(repo, "refs/heads/master", head)).rejects.toThrow("pass --commit <sha>");
  });
});
