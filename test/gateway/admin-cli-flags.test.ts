/** The gateway CLI refuses bad flag values as bad usage (exit 2), naming the flag, before any network call. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { Root } from "@tufjs/models";
import { join } from "node:path";
import { parseTufExpiries } from "../../gateway/ota/role-flag.ts";
import { UsageError } from "../../lib/cli/command.ts";
import { generateKey, modelKey } from "../../lib/tuf/keys.ts";
import { expiresAt, signMetadata } from "../../lib/tuf/metadata.ts";
import { removeTempDir, tempDir } from "../harness/tmp.ts";

const MAIN = join(import.meta.dir, "..", "..", "gateway", "main.ts");
let dir: string;

const cli = (...args: string[]) => {
  const r = Bun.spawnSync([process.execPath, MAIN, ...args], { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, err: r.stderr.toString() };
};

beforeAll(async () => {
  dir = await tempDir("admin-cli-flags-");
});

afterAll(() => removeTempDir(dir));

describe("gateway admin CLI flags", () => {
  test("a --server that is not a URL is bad usage, with the form it takes", () => {
    const r = cli("devices", "list", "--server", "notaurl", "--token", "T");
    expect(r).toEqual({ code: 2, err: "gateway devices list: --server notaurl: expected https://HOST[:PORT]\nRun 'gateway devices list --help' for usage.\n" });
  });

  test("an http:// --server is bad usage: the gateway speaks HTTPS only, nothing is asked of it", () => {
    // Port 1: were a connection tried, it would be refused (exit 4), not this.
    const r = cli("devices", "list", "--server", "http://127.0.0.1:1", "--token", "T");
    expect(r).toEqual({ code: 2, err: "gateway devices list: --server http://127.0.0.1:1: the gateway speaks HTTPS only: use https://127.0.0.1:1\nRun 'gateway devices list --help' for usage.\n" });
  });

  test("a long flag typed with one dash is named as typed, with the flag meant", () => {
    const r = cli("devices", "list", "-data", dir);
    expect(r).toEqual({ code: 2, err: "gateway devices list: unknown flag -data (did you mean --data?)\nRun 'gateway devices list --help' for usage.\n" });
  });

  test("export refuses a --platform that is not os/architecture as bad usage, before --out is made", () => {
    const out = join(dir, "bundle");
    const r = cli("export", "--server", "https://127.0.0.1:1", "--token", "T", "--target", "1", "--hwid", "amd64-linux", "--out", out, "--platform", "banana");
    expect({ code: r.code, err: r.err }).toEqual({
      code: 2,
      err: 'gateway export: --platform: Invalid platform "banana": expected os/architecture[/variant], e.g. linux/arm64\nRun \'gateway export --help\' for usage.\n',
    });
    expect(existsSync(out)).toBe(false);
  });

  test("export and rollouts create check --target (and --from) by the one version rule", () => {
    const rule = "expected a target version: 1-15 digits, as `fioup check` lists them";
    const server = ["--server", "https://127.0.0.1:1", "--token", "T"];
    expect(cli("export", ...server, "--target", "abc", "--hwid", "amd64-linux", "--out", join(dir, "b1")).err).toStartWith(`gateway export: --target: ${rule}, got "abc"\n`);
    expect(cli("export", ...server, "--target", "2", "--from", "v1", "--hwid", "amd64-linux", "--out", join(dir, "b1")).err).toStartWith(`gateway export: --from: ${rule}, got "v1"\n`);
    // Devices refuse an older target: a bundle --from a newer version would move nobody.
    const back = cli("export", ...server, "--target", "1", "--from", "2", "--hwid", "amd64-linux", "--out", join(dir, "b1"));
    expect({ code: back.code, err: back.err }).toEqual({ code: 2, err: expect.stringContaining("--from 2 must be older than --target 1: devices on 2 would refuse the bundle (no downgrades)") });
    expect(cli("export", ...server, "--target", "2", "--from", "2", "--hwid", "amd64-linux", "--out", join(dir, "b1")).code).toBe(2);
    const r = cli("rollouts", "create", ...server, "--target", "abc", "--tag", "main", "--waves", "100%");
    expect({ code: r.code, err: r.err }).toEqual({ code: 2, err: expect.stringContaining(`gateway rollouts create: --target: ${rule}, got "abc"\n`) });
  });

  test("a role given two values (--tuf-expiry, --threshold) is bad usage, not the last one silently winning", () => {
    expect(parseTufExpiries(["timestamp=1h", "snapshot=2d", "timestamp=3600s"])).toEqual({ timestamp: 3600, snapshot: 172800 });
    expect(() => parseTufExpiries(["timestamp=1h", "timestamp=2h"])).toThrow(new UsageError("--tuf-expiry timestamp given twice with different values: it takes one per role"));
    const key = generateKey();
    const root = new Root({ version: 1, specVersion: "1.0.31", expires: expiresAt(new Date(), 86400), consistentSnapshot: true });
    for (const role of ["root", "targets", "snapshot", "timestamp"]) root.addKey(modelKey(key), role);
    writeFileSync(join(dir, "1.root.json"), signMetadata(root, [key]));
    const r = cli("keys", "init-root", "--current", join(dir, "1.root.json"), "--threshold", "root=1", "--threshold", "root=2", "--out", join(dir, "2.root.json"));
    expect({ code: r.code, err: r.err }).toEqual({ code: 2, err: expect.stringContaining("gateway keys init-root: --threshold root given twice with different values: it takes one per role\n") });
    expect(existsSync(join(dir, "2.root.json"))).toBe(false);
  });

  test("a zero duration says it must be more than 0", () => {
    const r = cli("tokens", "create", "--expires", "0", "--server", "https://127.0.0.1:1", "--token", "T");
    expect({ code: r.code, err: r.err }).toEqual({ code: 2, err: expect.stringContaining('gateway tokens create: --expires: Invalid duration "0": must be more than 0\n') });
  });

  test("a duration without its unit is refused before any request (--expires 30 meant as days made a token that died in 30 s)", () => {
    const r = cli("tokens", "create", "--expires", "30", "--server", "https://127.0.0.1:1", "--token", "T");
    expect({ code: r.code, err: r.err }).toEqual({ code: 2, err: expect.stringContaining('gateway tokens create: --expires: Invalid duration "30": give its unit: 30s, 30m, 30h, 30d or 30w\n') });
    const soak = cli("rollouts", "create", "--target", "3", "--tag", "main", "--waves", "10%,100%", "--soak", "45", "--server", "https://127.0.0.1:1", "--token", "T");
    expect({ code: soak.code, err: soak.err }).toEqual({ code: 2, err: expect.stringContaining('--soak: Invalid duration "45": give its unit: 45s, 45m, 45h, 45d or 45w\n') });
  });
});
