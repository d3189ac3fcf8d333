import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkTargetNames, ConfigError, loadConfig } from "./config.ts";

const root = mkdtempSync(join(tmpdir(), "fioup-config-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function write(rel: string, text: string) {
  mkdirSync(join(root, rel, ".."), { recursive: true });
  writeFileSync(join(root, rel), text);
}

describe("loadConfig", () => {
  test("applies defaults under FIOUP_ROOT when nothing is configured", () => {
    const c = loadConfig({ root: join(root, "empty") });
    expect(c.storagePath).toBe(join(root, "empty/var/sota"));
    expect(c.composeAppsRoot).toBe(join(root, "empty/var/sota/compose-apps"));
    expect(c.resetAppsRoot).toBe(join(root, "empty/var/sota/reset-apps"));
    expect(c.storageWatermark).toBe(95);
    expect(c.pollingSeconds).toBe(300);
    expect(c.shortlist).toBeUndefined();
    expect(c.server).toBeUndefined();
  });

  test("merges /usr/lib/sota/conf.d, then sota.toml, then /etc/sota/conf.d, in name order", () => {
    write("var/sota/sota.toml", `[tls]\nserver = "https://gw:1/"\n[pacman]\ntags = "main"\ncompose_apps = "a,b"\nstorage_watermark = 80\n[provision]\nprimary_ecu_hardware_id = "hw"\n`);
    write("usr/lib/sota/conf.d/10-a.toml", `[pacman]\ntags = "lib"\n[uptane]\npolling_seconds = 10\n`);
    write("usr/lib/sota/conf.d/20-b.toml", `[uptane]\npolling_seconds = 20\n`);
    write("etc/sota/conf.d/50-x.toml", `[pacman]\ncompose_apps = ["c"]\n`);
    const c = loadConfig({ root });
    expect(c.server).toBe("https://gw:1");
    expect(c.tags).toEqual(["main"]); // sota.toml (registration) beats the image's defaults
    expect(c.shortlist).toEqual(["c"]);
    expect(c.storageWatermark).toBe(80);
    expect(c.pollingSeconds).toBe(20);
    expect(c.hardwareId).toBe("hw");
    expect(c.certPath).toBe(join(root, "var/sota/client.pem"));
    expect(c.sources.map((s) => s.slice(root.length))).toEqual([
      "/usr/lib/sota/conf.d/10-a.toml",
      "/usr/lib/sota/conf.d/20-b.toml",
      "/var/sota/sota.toml",
      "/etc/sota/conf.d/50-x.toml",
    ]);
  });

  test("device paths in config files are put under FIOUP_ROOT; host paths from older configs are kept", () => {
    write("rel/var/sota/sota.toml", `[storage]\npath = "/var/sota"\n[pacman]\nreset_apps_root = "/data/blobs"\ncompose_apps_root = "${join(root, "rel/apps")}"\n`);
    const c = loadConfig({ root: join(root, "rel") });
    expect(c.storagePath).toBe(join(root, "rel/var/sota"));
    expect(c.resetAppsRoot).toBe(join(root, "rel/data/blobs"));
    expect(c.composeAppsRoot).toBe(join(root, "rel/apps"));
  });

  test("the app shortlist: register --apps (sota.toml) beats preload's 50-preload.toml; /etc/sota/conf.d beats both", () => {
    const preload = `[pacman]\ncompose_apps = "a,b"\nreset_apps_root = "/var/sota/reset-apps"\n`;
    write("p1/usr/lib/sota/conf.d/50-preload.toml", preload);
    write("p1/var/sota/sota.toml", `[tls]\nserver = "https://gw"\n`); // registered without --apps
    expect(loadConfig({ root: join(root, "p1") }).shortlist).toEqual(["a", "b"]);
    write("p2/usr/lib/sota/conf.d/50-preload.toml", preload);
    write("p2/var/sota/sota.toml", `[pacman]\ncompose_apps = "a"\n`); // registered with --apps a
    expect(loadConfig({ root: join(root, "p2") }).shortlist).toEqual(["a"]);
    write("p2/etc/sota/conf.d/90-owner.toml", `[pacman]\ncompose_apps = "b"\n`);
    expect(loadConfig({ root: join(root, "p2") }).shortlist).toEqual(["b"]);
  });

  test("an empty compose_apps is an empty shortlist, not 'all apps'", () => {
    write("e/var/sota/sota.toml", `[pacman]\ncompose_apps = ""\n`);
    expect(loadConfig({ root: join(root, "e") }).shortlist).toEqual([]);
  });

  test("rejects a value of the wrong type naming the file and the key", () => {
    write("bad/var/sota/sota.toml", `[uptane]\npolling_seconds = true\n`);
    expect(() => loadConfig({ root: join(root, "bad") })).toThrow(ConfigError);
    expect(() => loadConfig({ root: join(root, "bad") })).toThrow(`${join(root, "bad/var/sota/sota.toml")}: uptane.polling_seconds`);
    write("bad3/etc/sota/conf.d/10-x.toml", `[pacman]\ntags = "a"\ntags = "b"\n`);
    expect(() => loadConfig({ root: join(root, "bad3") })).toThrow(`Cannot read ${join(root, "bad3/etc/sota/conf.d/10-x.toml")}: not valid TOML`);
    write("bad2/var/sota/sota.toml", `[pacman]\nstorage_watermark = 0\n`);
    expect(() => loadConfig({ root: join(root, "bad2") })).toThrow(/storage_watermark/);
    // Past setTimeout's 24.8 days the daemon's poll timer would fire at once, every time.
    write("bad4/var/sota/sota.toml", `[uptane]\npolling_seconds = 99999999999\n`);
    expect(() => loadConfig({ root: join(root, "bad4") })).toThrow("Invalid config: uptane.polling_seconds: must be 1..604800 (a week), got 99999999999");
  });

  test("a tag, app or hardware id no target can carry is refused with the rule where targets are chosen; the config still loads", () => {
    const check = (dir: string) => () => checkTargetNames(loadConfig({ root: join(root, dir) }));
    write("tag/etc/sota/conf.d/90-owner.toml", `[pacman]\ntags = "main, eu/west"\n`);
    expect(check("tag")).toThrow('Invalid config: pacman.tags: expected a tag (letters, digits, . _ -; at most 128, starting with a letter or digit), got "eu/west"');
    expect(loadConfig({ root: join(root, "tag") }).tags).toEqual(["main", "eu/west"]); // early start and status still run
    write("app/var/sota/sota.toml", `[pacman]\ncompose_apps = ["web", "my app"]\n`);
    expect(check("app")).toThrow("Invalid config: pacman.compose_apps: expected an app name");
    write("hw/var/sota/sota.toml", `[provision]\nprimary_ecu_hardware_id = "raspberry pi"\n`);
    expect(check("hw")).toThrow("Invalid config: provision.primary_ecu_hardware_id: expected a hardware id");
    write("ok/var/sota/sota.toml", `[pacman]\ntags = "main,eu-west_2.a"\ncompose_apps = "web,db"\n[provision]\nprimary_ecu_hardware_id = "rpi4-64"\n`);
    expect(check("ok")).not.toThrow();
    expect(loadConfig({ root: join(root, "ok") })).toMatchObject({ tags: ["main", "eu-west_2.a"], shortlist: ["web", "db"], hardwareId: "rpi4-64" });
  });
});
