/**
 * The crash explorer on two tiny programs: the atomic-write helper the tree uses (fsync the
 * file, rename, fsync the directory) and the pattern it replaced (write, rename, no fsync).
 * The explorer must pass the first and, for the second, report both missing fsyncs and find
 * the crash state a real power cut gives: the new name with empty content.
 */
import { describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir, run } from "../harness/tmp.ts";
import { explore, parseTrace, readTree, straceCommand } from "./_crash-explorer.ts";

const ROOT = join(import.meta.dir, "../..");

async function traced(body: string): Promise<{ root: string; initial: Map<string, Buffer>; trace: string }> {
  const dir = await tempDir("crash-explorer-");
  const root = join(dir, "root");
  mkdirSync(root);
  writeFileSync(join(root, "config.toml"), "old = 1\n");
  const script = join(dir, "prog.ts");
  writeFileSync(script, body.replaceAll("ROOT", JSON.stringify(root)).replaceAll("REPO", ROOT));
  const initial = readTree(root);
  const traceFile = join(dir, "trace");
  await run(straceCommand(traceFile, [process.execPath, script]));
  return { root, initial, trace: readFileSync(traceFile, "utf8") };
}

describe("crash explorer", () => {
  test("passes writeFileAtomic: every crash state has the old config or the new one", async () => {
    const t = await traced(`import { writeFileAtomic } from "REPO/lib/fs/atomic-write.ts";\nawait writeFileAtomic(ROOT + "/config.toml", "new = 2\\n");\n`);
    const x = explore(t.root, t.initial, parseTrace(t.trace));
    expect(x.violations).toEqual([]);
    expect(x.renames).toBe(1);
    const contents = new Set(x.states.map((s) => s.files.get("config.toml")?.toString()));
    expect([...contents].sort()).toEqual(["new = 2\n", "old = 1\n"]);
  }, 30_000);

  test("catches write-then-rename without fsync, and finds the empty file a power cut leaves", async () => {
    const t = await traced(
      `import { writeFileSync, renameSync } from "node:fs";\nwriteFileSync(ROOT + "/.config.tmp", "new = 2\\n");\nrenameSync(ROOT + "/.config.tmp", ROOT + "/config.toml");\n`,
    );
    const x = explore(t.root, t.initial, parseTrace(t.trace));
    expect(x.violations.map((v) => v.kind).sort()).toEqual(["rename-before-fsync", "rename-not-durable"]);
    const contents = new Set(x.states.map((s) => s.files.get("config.toml")?.toString()));
    expect(contents.has("")).toBe(true); // renamed, data never reached the disk
  }, 30_000);
});
