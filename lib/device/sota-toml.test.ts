import { describe, expect, test } from "bun:test";
import { mergeToml, parseSotaToml, parseToml, sotaToml, sotaTomlWarnings, stringifyToml, TomlError } from "./sota-toml.ts";
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

describe("sotaTomlWarnings", () => {
  test("any unknown key of [fioup], with the known key it resembles", () => {
    expect(sotaTomlWarnings(parseToml('[fioup]\ninstal_window = "Mon 01:00-02:00"\nfoo = 1\n', "f"), "/etc/sota/conf.d/60-x.toml")).toEqual([
      "/etc/sota/conf.d/60-x.toml: fioup.instal_window is not a key fioup reads, ignored (did you mean install_window?)",
      "/etc/sota/conf.d/60-x.toml: fioup.foo is not a key fioup reads, ignored",
    ]);
  });

  test("in aktualizr-lite's sections only a near miss of a key or section fioup reads", () => {
    expect(sotaTomlWarnings(parseToml('[pacman]\ntgas = "main"\n[pacmn]\ntags = "x"\n[uptane]\npoling_seconds = 5\n', "f"), "f")).toEqual([
      "f: pacman.tgas is not a key fioup reads, ignored (did you mean tags?)",
      "f: [pacmn] is not a section fioup reads, ignored (did you mean [pacman]?)",
      "f: uptane.poling_seconds is not a key fioup reads, ignored (did you mean polling_seconds?)",
    ]);
    // A real aktualizr-lite sota.toml: many keys fioup ignores, none worth a word.
    const lite = `[logger]\nloglevel = 2\n[p11]\nmodule = ""\npass = ""\n[tls]\nserver = "https://ota-lite.foundries.io:8443"\nca_source = "file"\npkey_source = "file"\ncert_source = "file"\n[provision]\nprimary_ecu_hardware_id = "intel-corei7-64"\nserver = "x"\n[uptane]\npolling_sec = 300\nrepo_server = "https://x/repo"\ndirector_server = "https://x/director"\nkey_source = "file"\n[pacman]\ntype = "ostree+compose_apps"\nos = "lmp"\nsysroot = "/sysroot"\nostree_server = "https://x/treehub"\npackages_file = "/usr/package.manifest"\ntags = "main"\ncompose_apps_root = "/var/sota/compose-apps"\nreset_apps_root = "/var/sota/reset-apps"\ndocker_apps_root = "/var/sota/docker-apps"\ncreate_containers_before_reboot = "1"\n[storage]\ntype = "sqlite"\npath = "/var/sota/"\nsqldb_path = "sql.db"\n[import]\nbase_path = "/var/sota"\ntls_cacert_path = "root.crt"\ntls_clientcert_path = "client.pem"\ntls_pkey_path = "pkey.pem"\n[bootloader]\nreboot_sentinel_dir = "/var/run/aktualizr-session"\nreboot_command = "/bin/true"\n`;
    expect(sotaTomlWarnings(parseToml(lite, "f"), "f")).toEqual([]);
  });
});
