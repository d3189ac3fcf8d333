import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCliCaptured } from "../test/harness/cli.ts";
import { commands } from "./commands/index.ts";
import { exitCodeFor } from "./exit-codes.ts";

const BUN = process.execPath;
const MAIN = join(import.meta.dir, "main.ts");
const dir = mkdtempSync(join(tmpdir(), "preload-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function preload(...args: string[]) {
  const p = Bun.spawnSync([BUN, MAIN, ...args]);
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

describe("preload CLI", () => {
  test("--help lists the commands and the exit-code table", () => {
    const r = preload("--help");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("assemble");
    expect(r.stdout).toContain("Exit codes:");
    expect(r.stdout).toMatch(/^ +10 +factory-config.yml is invalid/m);
  });

  test("a --root that is not JSON is said so, without quoting it (a passphrase file given by mistake)", async () => {
    const fc = join(dir, "ok-factory-config.yml");
    writeFileSync(fc, "containers:\n  tagging: {}\n");
    const secret = join(dir, "passphrase");
    writeFileSync(secret, "hunter2secret and more\n");
    const argv = ["--factory-config", fc, "--ref", "refs/heads/main", "--out", join(dir, "img"), "--targets", secret, "--root", secret];
    const { code, err } = await runCliCaptured({ name: "preload", version: "0", summary: "", commands, exitCodeFor, defaultCommand: "assemble" }, argv);
    expect(code).toBe(2);
    expect(err).toStartWith(`preload assemble: --root ${secret} is not TUF root metadata: not JSON\n`);
    expect(err).not.toContain("hunter2");
  });

  test("--json's help says what it does for bad usage: nothing on stdout, the error on stderr", async () => {
    const cli = { name: "preload", version: "0", summary: "", commands, exitCodeFor, defaultCommand: "assemble" };
    const help = await runCliCaptured(cli, ["assemble", "--help"]);
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/--json +Print the result, or the error \(\{error, code, exitCode\}\), as JSON on stdout \(bad usage, exit 2, is said on stderr only\)/);
    const { code, out, err } = await runCliCaptured(cli, ["--json", "--ref", "refs/heads/main"]);
    expect(code).toBe(2);
    expect({ out, err }).toEqual({ out: "", err: expect.stringContaining("preload assemble: --factory-config is required") });
    // --format json, as gateway and fioup take it, is pointed to --json.
    const asElsewhere = await runCliCaptured(cli, ["--format", "json", "--ref", "refs/heads/main"]);
    expect({ code: asElsewhere.code, err: asElsewhere.err }).toEqual({ code: 2, err: expect.stringContaining(`preload assemble: --format names the image's type here (dir, tar, ext4): for JSON output give --json\n`) });
  });

  test("an invalid factory-config.yml exits 10, naming the file", () => {
    const fc = join(dir, "factory-config.yml");
    writeFileSync(fc, "containers: [not, a, table]\n");
    const r = preload("--factory-config", fc, "--ref", "refs/heads/main", "--explain");
    expect(r.code, r.stderr).toBe(10);
    expect(r.stderr).toContain(fc);
  });
});
