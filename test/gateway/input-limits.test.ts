/**
 * Flag values the gateway CLI took although they did harm: a --data folder holding someone else's
 * files, timeouts and TUF lifetimes too short for any device, a token flag the role ignores, and
 * a ceremony file that is there but cannot be read called bad usage. Each is run through the real
 * CLI in-process (parsing, message, exit code), refused before anything is written.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { commands } from "../../gateway/commands/index.ts";
import { exitCodeFor } from "../../gateway/exit-codes.ts";
import { runCliCaptured } from "../harness/cli.ts";
import { removeTempDir, tempDir } from "../harness/tmp.ts";

let work: string;

/** One run of `gateway ARGV`: its exit code and the first line of what it said on stderr. */
const said = async (...argv: string[]) => {
  const { code, err } = await runCliCaptured({ name: "gateway", version: "0", summary: "", commands, exitCodeFor }, argv);
  return { code, err: err.split("\n")[0] };
};

/** Every path below `dir`, so a test can see that nothing was added or removed. */
const tree = (dir: string): string[] => readdirSync(dir, { recursive: true, encoding: "utf8" }).sort();

beforeAll(async () => {
  work = await tempDir("input-limits-");
});
afterAll(() => removeTempDir(work));

describe("serve --data", () => {
  // --tls-cert without --tls-key is refused right after the --data checks: reaching it means --data was taken.
  const taken = { code: 2, err: "gateway serve: --tls-cert and --tls-key go together" };

  test("a folder holding other files (a home folder) is refused, naming what it holds, and nothing is written", async () => {
    const home = join(work, "home");
    mkdirSync(join(home, "projects"), { recursive: true });
    for (const f of ["notes.txt", ".bashrc", "photo.jpg", "todo.md"]) writeFileSync(join(home, f), `mine: ${f}\n`);
    const before = tree(home);
    // With --tls-cert alone, a start that took this --data would stop at that flag, not serve into the folder.
    expect(await said("serve", "--data", home, "--tls-cert", "x.pem")).toEqual({
      code: 2,
      err:
        `gateway serve: --data ${home} is not a gateway data dir: it holds notes.txt, photo.jpg, projects and 1 more but none of factory.json, pki/ca.pem, pki/ca.key, admin-token, ` +
        "and the gateway would put its files among them. Nothing was written: give the data dir the gateway made, or a new or empty folder for a new one",
    });
    expect(tree(home)).toEqual(before);
  });

  test("a missing folder, an empty one (hidden files aside) and a gateway data dir are taken", async () => {
    const empty = join(work, "empty");
    mkdirSync(empty);
    const hidden = join(work, "hidden-only");
    mkdirSync(hidden);
    writeFileSync(join(hidden, ".harness-port"), "8443");
    const data = join(work, "data");
    mkdirSync(join(data, "pki"), { recursive: true });
    writeFileSync(join(data, "factory.json"), '{"name":"main"}\n');
    writeFileSync(join(data, "gateway.db"), "");
    for (const dir of [join(work, "absent"), empty, hidden, data]) expect({ dir, ...(await said("serve", "--data", dir, "--tls-cert", "x.pem")) }).toEqual({ dir, ...taken });
  });
});
