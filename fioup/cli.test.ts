import { describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const BUN = process.execPath;
const MAIN = join(import.meta.dir, "main.ts");

function fioup(...args: string[]) {
  const p = Bun.spawnSync([BUN, MAIN, ...args], { env: { ...process.env, FIOUP_ROOT: "/nonexistent-fioup-root" } });
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

describe("fioup CLI", () => {
  test("a tag no target can carry stops the commands that choose targets (config invalid, exit 20), not early start or status", () => {
    const root = mkdtempSync(join(tmpdir(), "fioup-bad-tag-"));
    try {
      mkdirSync(join(root, "etc/sota/conf.d"), { recursive: true });
      writeFileSync(join(root, "etc/sota/conf.d/90-owner.toml"), `[pacman]\ntags = "eu/west"\n`);
      const run = (...args: string[]) => {
        const p = Bun.spawnSync([BUN, MAIN, ...args], { env: { ...process.env, FIOUP_ROOT: root } });
        return { code: p.exitCode, stderr: p.stderr.toString() };
      };
      for (const cmd of [["check"], ["update"], ["daemon", "--cycles", "1"]]) {
        const r = run(...cmd);
        expect({ cmd, code: r.code, err: r.stderr }).toEqual({ cmd, code: 20, err: expect.stringContaining('Invalid config: pacman.tags: expected a tag (letters, digits, . _ -; at most 128, starting with a letter or digit), got "eu/west"') });
      }
      // status reads the device: its folder must be there (a missing one is said, exit 11).
      mkdirSync(join(root, "var/sota"), { recursive: true });
      const status = run("status", "--no-apps");
      expect({ code: status.code, err: status.stderr }).toEqual({ code: 0, err: expect.not.stringContaining("pacman.tags") });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  test("a number flag that is not a whole number is a usage error (exit 2), before anything runs", () => {
    for (const bad of ["abc", "1.5", "-3", "0", ""]) {
      const r = fioup("daemon", "--cycles", bad);
      expect(r.code, `--cycles ${bad}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(`fioup daemon: --cycles must be a whole number 1 or more, got "${bad}"`);
    }
  });

  test("damaged registration files: status still shows the device, with what is wrong; a command that talks to the gateway exits 20 naming the file", () => {
    const root = mkdtempSync(join(tmpdir(), "fioup-damaged-reg-"));
    try {
      const sota = join(root, "var/sota");
      mkdirSync(sota, { recursive: true });
      writeFileSync(join(sota, "sota.toml"), `[tls]\nserver = "https://127.0.0.1:1"\n`);
      for (const f of ["client.pem", "root.crt", "pkey.pem"]) writeFileSync(join(sota, f), "garbage\n");
      const run = (...args: string[]) => Bun.spawnSync([BUN, MAIN, ...args], { env: { ...process.env, FIOUP_ROOT: root } });
      const status = run("status", "--no-apps", "--format", "json");
      expect(status.exitCode, status.stderr.toString()).toBe(0);
      const o = JSON.parse(status.stdout.toString());
      expect(o.registered).toBe(true);
      expect(o.registrationProblem).toContain(`Cannot use ${join(sota, "client.pem")}: it is not a PEM certificate`);
      expect(run("status", "--no-apps").stdout.toString()).toContain(`Registration: Cannot use ${join(sota, "client.pem")}`);
      const check = run("check");
      expect(check.exitCode).toBe(20);
      expect(check.stderr.toString()).toContain(`Cannot use ${join(sota, "client.pem")}`);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  test("with FIOUP_ROOT, a --sota-dir outside it is a usage error before anything is written (its config would point under the root)", () => {
    const p = Bun.spawnSync([BUN, MAIN, "register", "--server", "https://127.0.0.1:1", "--token", "t", "--sota-dir", "/var/sota-elsewhere"], {
      env: { ...process.env, FIOUP_ROOT: "/tmp/fioup-root-test" },
    });
    expect(p.exitCode).toBe(2);
    expect(p.stderr.toString()).toContain("--sota-dir /var/sota-elsewhere is outside FIOUP_ROOT /tmp/fioup-root-test: give a directory under it (e.g. /tmp/fioup-root-test/var/sota)");
  });

  test("register: a --server that is not an https:// URL, or a malformed token, is bad usage (exit 2), not a failed registration", () => {
    const url = fioup("register", "--server", "notaurl", "--token", "t");
    expect({ code: url.code, err: url.stderr }).toEqual({ code: 2, err: expect.stringContaining("--server notaurl: expected https://HOST[:PORT]") });
    const token = fioup("register", "--server", "https://127.0.0.1:1", "--token", "no-pin");
    expect({ code: token.code, err: token.stderr }).toEqual({ code: 2, err: expect.stringContaining("the token (--token or FIOUP_TOKEN) is not <secret>.<sha256 of the CA>") });
    // An app name no target can hold would shortlist nothing: said before the gateway is asked.
    const apps = fioup("register", "--server", "https://127.0.0.1:1", "--token", `s.${"a".repeat(64)}`, "--apps", "web,my app");
    expect({ code: apps.code, err: apps.stderr }).toEqual({ code: 2, err: expect.stringContaining('--apps: expected an app name (letters, digits, . _ -; at most 128), got "my app"') });
    // So would a tag no target can carry (publish makes only plain names).
    const tag = fioup("register", "--server", "https://127.0.0.1:1", "--token", `s.${"a".repeat(64)}`, "--tag", "main", "--tag", "prod;eu");
    expect({ code: tag.code, err: tag.stderr }).toEqual({ code: 2, err: expect.stringContaining('--tag: expected a tag (letters, digits, . _ -; at most 128, starting with a letter or digit), got "prod;eu"') });
    const hwid = fioup("register", "--server", "https://127.0.0.1:1", "--token", `s.${"a".repeat(64)}`, "--hwid", "raspberry pi");
    expect({ code: hwid.code, err: hwid.stderr }).toEqual({ code: 2, err: expect.stringContaining('--hwid: expected a hardware id (letters, digits, . _ -; at most 128, starting with a letter or digit), got "raspberry pi"') });
  });

  test("update: --interval without --watch is bad usage, not silently ignored", () => {
    const r = fioup("update", "--offline", "/nonexistent-bundle", "--interval", "5");
    expect({ code: r.code, err: r.stderr }).toEqual({ code: 2, err: expect.stringContaining("--interval only applies with --watch") });
  });

  test("--help shows the exit-code table", () => {
    const r = fioup("--help");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Exit codes:");
    expect(r.stdout).toMatch(/^ +41 +not enough space/m);
    expect(r.stdout).toMatch(/^ +10 +invalid action .*saved plan/m);
  });
});
