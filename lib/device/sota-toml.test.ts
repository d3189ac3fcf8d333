import { describe, expect, test } from "bun:test";
import { mergeToml, parseSotaToml, parseToml, sotaToml, stringifyToml, TomlError } from "./sota-toml.ts";
import { describeError } from "../cli/command.ts";

describe("sotaToml", () => {
  test("writes a TOML file fioup reads: server, hwid, polling, tags and shortlist", () => {
    const text = sotaToml({ server: "https://gw:8443", hardwareId: "arm64-linux", tags: ["main", "beta"], apps: ["a", "b"], pollingSeconds: 30 });
    expect(Bun.TOML.parse(text)).toMatchObject({
      tls: { server: "https://gw:8443" },
      provision: { primary_ecu_hardware_id: "arm64-linux" },
      uptane: { polling_seconds: 30 },
      pacman: { tags: "main,beta", compose_apps: "a,b" },
    });
  });

  test("leaves compose_apps out when the device runs all apps, and escapes quotes", () => {
    const parsed = Bun.TOML.parse(sotaToml({ server: "https://x", hardwareId: 'we"ird', tags: [], pollingSeconds: 300 })) as any;
    expect(parsed.pacman.compose_apps).toBeUndefined();
    expect(parsed.provision.primary_ecu_hardware_id).toBe('we"ird');
  });
});

describe("parseToml / parseSotaToml", () => {
  test("reads TOML and round-trips what stringifyToml writes", () => {
    const v = { a: "1", tls: { server: "https://x", n: 3, b: false }, pacman: { l: ["x", 'y"z'] }, deep: { er: { k: "v" } } };
    expect(parseToml(stringifyToml(v), "x.toml")).toEqual(v);
  });

  test("a syntax error names the file and the reason", () => {
    expect(() => parseToml("a = 1\na = 2\n", "/etc/sota/conf.d/10-x.toml")).toThrow(TomlError);
    expect(() => parseToml("a = 1\na = 2\n", "/etc/sota/conf.d/10-x.toml")).toThrow(/^Cannot read \/etc\/sota\/conf.d\/10-x.toml: not valid TOML at line 2: .*'a'/);
    // Said once: the error carries no cause for describeError to repeat.
    const err = (() => { try { parseToml("[uptane\n", "f"); } catch (e) { return e as Error; } })();
    expect(describeError(err)).toBe("Cannot read f: not valid TOML at line 1: Expected ']' to close a table header but found the end of the line");
  });

  test("a syntax error names its line (1-based), counted as the file's lines", () => {
    expect(() => parseToml("[tls]\n[pacman\n", "/var/sota/sota.toml")).toThrow(
      "Cannot read /var/sota/sota.toml: not valid TOML at line 2: Expected ']' to close a table header but found the end of the line",
    );
    expect(() => parseToml("a = 1\r\n\r\n# x\r\na = 2\r\n", "f")).toThrow("Cannot read f: not valid TOML at line 4: Cannot redefine key 'a'");
    expect(() => parseToml("[fioup]\nx = 1\n\n  y = = 2\n", "f")).toThrow("not valid TOML at line 4: Expected a value but found '='");
  });

  test("a UTF-8 byte order mark at the start is accepted", () => {
    // Some Windows editors write one; twice is what a file saved through two of them holds.
    for (const bom of ["\uFEFF", "\uFEFF\uFEFF"]) {
      expect(parseToml(`${bom}[pacman]\ntags = "main"\n`, "f")).toEqual({ pacman: { tags: "main" } });
      expect(parseSotaToml(`${bom}# owner's settings\n[fioup]\nmax_hold_seconds = 5\n`, "f").fioup?.max_hold_seconds).toBe(5);
    }
  });

  test("a value of the wrong type names the file and the key", () => {
    expect(() => parseSotaToml("[uptane]\npolling_seconds = true\n", "/var/sota/sota.toml")).toThrow(
      "Cannot read /var/sota/sota.toml: uptane.polling_seconds: expected a whole number, got true",
    );
    expect(() => parseSotaToml("[pacman]\ntags = 5\n", "f")).toThrow("Cannot read f: pacman.tags: expected a string (comma-separated) or a list of strings, got 5");
    expect(() => parseSotaToml("[storage]\npath = 5\n", "f")).toThrow("Cannot read f: storage.path: expected string, got 5");
    expect(parseSotaToml('[pacman]\ncompose_apps = ["a", "b"]\nextra = 1\n', "f").pacman?.compose_apps).toEqual(["a", "b"]);
  });

  test("mergeToml: tables merge key by key, later values win", () => {
    expect(mergeToml({ pacman: { tags: "a", compose_apps: "x" }, tls: { server: "s" } }, { pacman: { compose_apps: "y" } })).toEqual({
      pacman: { tags: "a", compose_apps: "y" },
      tls: { server: "s" },
    });
  });
});
