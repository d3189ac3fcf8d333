import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkTargetNames, configLocation, ConfigError, loadConfig } from "./config.ts";
import { UsageError } from "../lib/cli/command.ts";
import { DeviceClient } from "./device-client.ts";

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

  test("aktualizr-lite's uptane.polling_sec is read as polling_seconds, the later file winning whichever name it uses", () => {
    write("ak/var/sota/sota.toml", `[uptane]\npolling_seconds = 300\n`); // what registration writes
    write("ak/etc/sota/conf.d/z-50-fioctl.toml", `[uptane]\npolling_sec = 60\n`); // a fioctl drop-in for aktualizr-lite
    expect(loadConfig({ root: join(root, "ak") }).pollingSeconds).toBe(60);
    write("ak/etc/sota/conf.d/z-60-own.toml", `[uptane]\npolling_seconds = 45\npolling_sec = 90\n`); // fioup's name wins in one file
    expect(loadConfig({ root: join(root, "ak") }).pollingSeconds).toBe(45);
    write("ak2/var/sota/sota.toml", `[uptane]\npolling_sec = 0\n`);
    expect(() => loadConfig({ root: join(root, "ak2") })).toThrow(`uptane.polling_seconds: must be 1..604800 (a week), got 0 (set in ${join(root, "ak2/var/sota/sota.toml")})`);
    write("ak3/var/sota/sota.toml", `[uptane]\npolling_sec = "soon"\n`);
    expect(() => loadConfig({ root: join(root, "ak3") })).toThrow("uptane.polling_sec");
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
  });

  test("a tls.server that is not a URL is an invalid config naming the key (it was a bare 'Invalid URL', exit 1)", () => {
    write("badserver/var/sota/sota.toml", `[tls]\nserver = "notaurl"\n`);
    expect(() => loadConfig({ root: join(root, "badserver") })).toThrow(ConfigError);
    expect(() => loadConfig({ root: join(root, "badserver") })).toThrow(`Invalid config: tls.server: expected the gateway's https:// URL, got "notaurl"`);
    write("goodserver/var/sota/sota.toml", `[tls]\nserver = "https://gw.example:8443/ota/"\n`);
    expect(loadConfig({ root: join(root, "goodserver") }).server).toBe("https://gw.example:8443/ota");
  });

  test("a damaged device certificate, CA or key is config invalid naming the file (it was 'FailedToOpenSocket: Was there a typo in the url or port?', exit 31)", () => {
    write("damaged/var/sota/sota.toml", `[tls]\nserver = "https://127.0.0.1:1"\n`);
    for (const f of ["client.pem", "root.crt", "pkey.pem"]) write(`damaged/var/sota/${f}`, "garbage\n");
    const cfg = loadConfig({ root: join(root, "damaged") });
    expect(() => DeviceClient.fromConfig(cfg, {} as never)).toThrow(ConfigError);
    expect(() => DeviceClient.fromConfig(cfg, {} as never)).toThrow(`Cannot use ${cfg.certPath}: it is not a PEM certificate (the device's registration files are damaged`);
  });

  test("a key that is not the certificate's (a power cut between a registration's two writes) is said as damaged files, not as a network failing for ever", async () => {
    const { createCa } = await import("../gateway/pki/ca.ts");
    const [a, b] = [await createCa("main"), await createCa("main")];
    write("mismatch/var/sota/sota.toml", `[tls]\nserver = "https://127.0.0.1:1"\n`);
    write("mismatch/var/sota/client.pem", a.certPem);
    write("mismatch/var/sota/root.crt", a.certPem);
    write("mismatch/var/sota/pkey.pem", b.keyPem);
    const cfg = loadConfig({ root: join(root, "mismatch") });
    expect(() => DeviceClient.fromConfig(cfg, {} as never)).toThrow(`Cannot use ${cfg.keyPath}: it is not the key of the certificate ${cfg.certPath} (the device's registration files are damaged`);
    write("mismatch/var/sota/pkey.pem", a.keyPem);
    expect(DeviceClient.fromConfig(cfg, {} as never)).toBeInstanceOf(DeviceClient);
  });

  test("a sota.toml (or conf.d file) that is a directory is said in words, not as an errno", () => {
    mkdirSync(join(root, "dirtoml/var/sota/sota.toml"), { recursive: true });
    expect(() => loadConfig({ root: join(root, "dirtoml") })).toThrow(`Cannot read config ${join(root, "dirtoml/var/sota/sota.toml")}: it is a directory`);
    mkdirSync(join(root, "dirconf/etc/sota/conf.d/10-x.toml"), { recursive: true });
    expect(() => loadConfig({ root: join(root, "dirconf") })).toThrow(/: it is a directory$/);
  });

  test("seconds that end in a timer or a date are capped, with a warning naming the file: past 24.8 days setTimeout fires at once", () => {
    // Not refused: fioup up to 2026-12-02 took any value, and a refusal would stop every command of
    // a device whose files hold one, the daemon too, with no way to change the file over the air.
    const warned: string[] = [];
    const load = (dir: string) => loadConfig({ root: join(root, dir) }, (l) => warned.push(l));
    // Past setTimeout's 24.8 days the daemon's poll timer would fire at once, every time.
    write("bad4/var/sota/sota.toml", `[uptane]\npolling_seconds = 99999999999\n`);
    expect(load("bad4").pollingSeconds).toBe(604800);
    // A stall watchdog of 2^31 ms or more would call every download stalled at once.
    write("stall/var/sota/sota.toml", `[fioup]\ndownload_stall_seconds = 2147484\n`);
    expect(load("stall").downloadStallSeconds).toBe(3600);
    write("stall2/var/sota/sota.toml", `[fioup]\ndownload_stall_seconds = 3600\n`);
    expect(load("stall2").downloadStallSeconds).toBe(3600);
    // A hold's deadline is written as a date: far enough out there is none (toISOString throws).
    write("hold/var/sota/sota.toml", `[fioup]\nmax_hold_seconds = "99999999999999"\n`);
    expect(load("hold").maxHoldSeconds).toBe(31536000);
    expect(warned).toEqual([
      `uptane.polling_seconds: 99999999999 is more than 604800 (a week), the most fioup takes: it polls every 604800 s (set in ${join(root, "bad4/var/sota/sota.toml")}); lower it there to silence this`,
      `fioup.download_stall_seconds: 2147484 is more than 3600 (an hour), the most fioup takes: it resumes a stalled download after 3600 s (set in ${join(root, "stall/var/sota/sota.toml")}); lower it there to silence this`,
      `fioup.max_hold_seconds: 99999999999999 is more than 31536000 (a year), the most fioup takes: it lets update locks hold an update for at most 31536000 s (set in ${join(root, "hold/var/sota/sota.toml")}); lower it there to silence this`,
    ]);
    // Below the least is refused, as it always was.
    write("stall3/var/sota/sota.toml", `[fioup]\ndownload_stall_seconds = 0\n`);
    expect(() => load("stall3")).toThrow("Invalid config: fioup.download_stall_seconds: must be 1..3600 (an hour), got 0");
  });

  test("a docker host that is not a unix socket is an invalid config saying so (it was 'no such socket' for tcp://...)", () => {
    write("tcp/var/sota/sota.toml", `[fioup]\ndocker_host = "tcp://127.0.0.1:2375"\n`);
    expect(() => loadConfig({ root: join(root, "tcp") })).toThrow(/Invalid config: fioup\.docker_host: tcp:\/\/127\.0\.0\.1:2375: only unix:\/\/ sockets are supported/);
    const saved = process.env.DOCKER_HOST;
    try {
      process.env.DOCKER_HOST = "ssh://pi@device";
      write("env/var/sota/sota.toml", "");
      expect(() => loadConfig({ root: join(root, "env") })).toThrow(/DOCKER_HOST \(environment\): ssh:\/\/pi@device: only unix:\/\/ sockets/);
      process.env.DOCKER_HOST = "unix:///run/docker.sock";
      expect(loadConfig({ root: join(root, "env") }).dockerHost).toBe("/run/docker.sock");
    } finally {
      if (saved === undefined) delete process.env.DOCKER_HOST;
      else process.env.DOCKER_HOST = saved;
    }
  });

  test("a value out of range names the last file that set it (later files win)", () => {
    write("orig/usr/lib/sota/conf.d/10-a.toml", `[fioup]\nmax_hold_seconds = 5\ninstall_window = "Mon 01:00-02:00"\n`);
    write("orig/var/sota/sota.toml", `[fioup]\nmax_hold_seconds = 7\n`);
    write("orig/etc/sota/conf.d/60-x.toml", `[fioup]\nmax_hold_seconds = -1\n`);
    const etc = join(root, "orig/etc/sota/conf.d/60-x.toml");
    expect(() => loadConfig({ root: join(root, "orig") })).toThrow(`Invalid config: fioup.max_hold_seconds: must be 0..31536000 (a year), got -1 (set in ${etc})`);
    write("orig/etc/sota/conf.d/60-x.toml", `[fioup]\ntime_zone = "Mars/Olympus"\n`);
    expect(() => loadConfig({ root: join(root, "orig") })).toThrow(new RegExp(`^Invalid config: fioup\\.time_zone: .* \\(set in ${etc}\\)$`));
    write("orig/etc/sota/conf.d/60-x.toml", `[pacman]\nstorage_watermark = 101\n[uptane]\npolling_seconds = 0\n`);
    expect(() => loadConfig({ root: join(root, "orig") })).toThrow(`(set in ${etc})`);
    write("orig/etc/sota/conf.d/60-x.toml", `[fioup]\ninstall_window = "Mon 01:00"\n`);
    expect(() => loadConfig({ root: join(root, "orig") })).toThrow(new RegExp(`^Invalid config: fioup\\.install_window: .* \\(set in ${etc}\\)$`));
    write("orig/etc/sota/conf.d/60-x.toml", `[pacman]\ntags = "eu/west"\n`);
    expect(() => checkTargetNames(loadConfig({ root: join(root, "orig") }))).toThrow(`got "eu/west" (set in ${etc})`);
  });

  test("a misspelt key is a warning naming the file and the key meant, once, on stderr: json output and the exit code are untouched", () => {
    write("typo/var/sota/keep", "");
    write("typo/etc/sota/conf.d/60-x.toml", `[fioup]\ninstal_window = "Mon 01:00-02:00"\n`);
    const warned: string[] = [];
    expect(loadConfig({ root: join(root, "typo") }, (l) => warned.push(l)).installWindow).toBeUndefined();
    expect(warned).toEqual([`${join(root, "typo/etc/sota/conf.d/60-x.toml")}: fioup.instal_window is not a key fioup reads, ignored (did you mean install_window?)`]);
    const p = Bun.spawnSync([process.execPath, join(import.meta.dir, "main.ts"), "status", "--no-apps", "--format", "json"], { env: { ...process.env, FIOUP_ROOT: join(root, "typo"), FIOUP_SOTA_DIR: undefined } });
    expect(p.exitCode).toBe(0);
    expect(() => JSON.parse(p.stdout.toString())).not.toThrow();
    expect(p.stderr.toString().match(/^warning: .*fioup\.instal_window.*$/gm)?.length).toBe(1);
  });

  test("--sota-dir / FIOUP_SOTA_DIR: empty, or a path that is not a directory, is bad usage", () => {
    expect(() => configLocation({ "sota-dir": "" })).toThrow(new UsageError(`--sota-dir is empty: give the directory holding sota.toml (e.g. ${join(process.env.FIOUP_ROOT ?? "", "/var/sota")})`));
    write("afile", "x");
    expect(() => configLocation({ "sota-dir": join(root, "afile") })).toThrow(`--sota-dir ${join(root, "afile")} is not a directory: give the directory holding sota.toml, not a file`);
    const saved = process.env.FIOUP_SOTA_DIR;
    process.env.FIOUP_SOTA_DIR = "";
    try {
      expect(() => configLocation({})).toThrow("FIOUP_SOTA_DIR is empty");
    } finally {
      if (saved === undefined) delete process.env.FIOUP_SOTA_DIR;
      else process.env.FIOUP_SOTA_DIR = saved;
    }
  });

  test("through the CLI: an empty or file --sota-dir is exit 2 and lock writes nothing", () => {
    write("cli/var/sota/keep", "");
    const run = (...args: string[]) => {
      const p = Bun.spawnSync([process.execPath, join(import.meta.dir, "main.ts"), ...args], { env: { ...process.env, FIOUP_ROOT: join(root, "cli"), FIOUP_SOTA_DIR: undefined }, cwd: join(root, "cli") });
      return { code: p.exitCode, err: p.stderr.toString() };
    };
    expect(run("lock", "--sota-dir=")).toEqual({ code: 2, err: expect.stringContaining("--sota-dir is empty") });
    expect(existsSync(join(root, "cli/update-locks"))).toBe(false);
    for (const cmd of ["lock", "status"])
      expect(run(cmd, "--sota-dir", join(root, "cli/var/sota/keep"))).toEqual({ code: 2, err: expect.stringContaining("is not a directory") });
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
