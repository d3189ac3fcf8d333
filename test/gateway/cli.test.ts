/** The gateway CLI against a running gateway, the way an operator uses it. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { chmodSync, existsSync, readdirSync } from "node:fs";
import { mkdir, readFile, stat, utimes } from "node:fs/promises";
import { dirname, join } from "node:path";
import { once } from "node:events";
import { createServer, type AddressInfo } from "node:net";
import { hostname } from "node:os";
import { makeDeviceCsr } from "./_device.ts";
import { post, tlsFetch } from "./_client.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { runCliCaptured, gatewayRun } from "../harness/cli.ts";
import { run, tempDir } from "../harness/tmp.ts";
import { commands } from "../../gateway/commands/index.ts";
import { exitCodeFor } from "../../gateway/exit-codes.ts";

const MAIN = join(import.meta.dir, "..", "..", "gateway", "main.ts");
let dir: string;
let g: GatewayHandle;

const cli = (...args: string[]) => gatewayRun(args);

beforeAll(async () => {
  g = await startGateway({ args: ["--factory", "acme"] });
  dir = g.dataDir;
}, 120_000);

afterAll(async () => {
  await g?.stop();
}, 120_000);

describe("gateway CLI", () => {
  test("serve initialised the data dir with private secrets and never logged the admin token", async () => {
    const token = (await readFile(join(dir, "admin-token"), "utf8")).trim();
    expect((await stat(join(dir, "admin-token"))).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, "pki", "ca.key"))).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await readFile(join(dir, "factory.json"), "utf8"))).toEqual({ name: "acme" });
    expect(await readFile(g.logFile, "utf8")).not.toContain(token.split(".")[0]);
    // ...but says where it is, so a new user can run the admin commands.
    expect(await readFile(g.logFile, "utf8")).toContain(`the admin token is in ${join(dir, "admin-token")} (mode 0600`);
  }, 60_000);

  test("tokens create, a device registers with the token, devices list/show/revoke", async () => {
    const created = cli("tokens", "create", "--data", dir, "--tag", "beta", "--expires", "2h", "--format", "json");
    expect(created.code).toBe(0);
    const { token } = JSON.parse(created.out) as { token: string };
    const ca = await readFile(join(dir, "pki", "ca.pem"), "utf8");
    const k = await makeDeviceCsr();
    const reg = await tlsFetch({ ca })(`${g.url}/devices`, {
      ...post({ name: "kiosk", uuid: k.uuid, csr: k.csrPem, "hardware-id": "arm64-linux" }),
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    });
    expect(reg.status).toBe(201);

    const list = cli("devices", "list", "--data", dir, "--format", "json");
    expect(list.code).toBe(0);
    expect((JSON.parse(list.out) as { devices: { uuid: string; tags: string[]; factory: string }[] }).devices).toEqual([
      expect.objectContaining({ uuid: k.uuid, tags: ["beta"], factory: "acme" }),
    ]);
    expect(cli("devices", "list", "--data", dir).out).toContain("kiosk");
    const show = cli("devices", "show", k.uuid, "--data", dir);
    expect(show.code).toBe(0);
    expect(show.out).toContain("arm64-linux");
    expect(cli("tokens", "list", "--data", dir).out).toContain("beta");
    // A device's name or the start of its uuid, as devices list shows them, in place of the uuid: the 404 says whose they are.
    const byName = cli("devices", "show", "kiosk", "--data", dir);
    expect({ code: byName.code, err: byName.err }).toEqual({ code: 3, err: expect.stringContaining(`Device "kiosk" not found: "kiosk" is the name of ${k.uuid}: give that uuid\n`) });
    const prefix = k.uuid.slice(0, 8);
    expect(cli("devices", "label", prefix, "a=b", "--data", dir).err).toEndWith(`: "${prefix}" is the start of the uuid of ${k.uuid}: give that uuid\n`);
    expect(cli("devices", "revoke", "kiosk2", "--data", dir).err).toEndWith(`: give the device's uuid (gateway devices list shows them)\n`);
    // Lists of uuids are checked before anything is sent: a name there is said as such too (bad usage).
    for (const args of [["groups", "create", "pilot", "kiosk"], ["groups", "add", "pilot", k.uuid, "kiosk"], ["rollouts", "create", "--target", "9", "--tag", "main", "--waves", "100%", "--first", `${k.uuid},kiosk`]]) {
      const r = cli(...args, "--data", dir);
      expect({ args, code: r.code, err: r.err }).toEqual({ args, code: 2, err: expect.stringContaining(`got "kiosk": "kiosk" is the name of ${k.uuid}: give that uuid\n`) });
    }

    const revoked = cli("devices", "revoke", k.uuid, "--data", dir);
    expect(revoked.code).toBe(0);
    // A token with uses left would register the same key again under a new uuid: the output says so.
    expect(revoked.out).toContain("gateway tokens revoke");
    expect(JSON.parse(cli("devices", "show", k.uuid, "--data", dir, "--format", "json").out).revokedAt).toBeString();
  }, 60_000);

  test("targets list and keys rotate work; --server/--token with the CA pinned by the token", async () => {
    const token = (await readFile(join(dir, "admin-token"), "utf8")).trim();
    const t = cli("targets", "list", "--server", g.url, "--token", token, "--format", "json");
    expect(t.code).toBe(0);
    expect(JSON.parse(t.out)).toMatchObject({ targets: {}, version: 1 });
    const r = cli("keys", "rotate", "snapshot", "--data", dir, "--format", "json");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out).rootVersion).toBe(2);
    const badPin = cli("targets", "list", "--server", g.url, "--token", `${token.split(".")[0]}.${"0".repeat(64)}`);
    expect(badPin.code).toBe(5); // not "unreachable": it answered, with another CA
    expect(badPin.err).toContain("does not match the token");
    expect(badPin.err).toContain("give a token this gateway made, or the URL of the gateway that made the token");
    const down = cli("targets", "list", "--server", "https://127.0.0.1:1", "--token", token);
    expect(down.code).toBe(4);
  }, 60_000);

  test("errors: wrong token exits 3 with the gateway's reason; bad usage exits 2", async () => {
    const pin = (await readFile(join(dir, "admin-token"), "utf8")).trim().split(".")[1];
    const wrong = cli("devices", "list", "--server", g.url, "--token", `wrong.${pin}`);
    expect(wrong.code).toBe(3);
    // No token is called an admin token that is not one: the gateway names the role it knows.
    expect(wrong.err).toContain("gateway answered 403: Token refused: unknown token");
    const registration = (JSON.parse(cli("tokens", "create", "--data", dir, "--format", "json").out) as { token: string }).token;
    const asApi = cli("devices", "list", "--server", g.url, "--token", registration);
    expect({ code: asApi.code, err: asApi.err }).toEqual({
      code: 3,
      err: expect.stringContaining("gateway answered 403: Registration token refused: it only registers devices; an API token is made with `gateway tokens create --role publish` (or admin, or viewer)"),
    });
    const viewer = JSON.parse(cli("tokens", "create", "--data", dir, "--role", "viewer", "--format", "json").out) as { id: string; token: string };
    expect(cli("tokens", "revoke", viewer.id, "--data", dir).code).toBe(0);
    const revoked = cli("targets", "list", "--server", g.url, "--token", viewer.token);
    expect({ code: revoked.code, err: revoked.err }).toEqual({ code: 3, err: expect.stringMatching(/gateway answered 403: Viewer token refused: this token was revoked at \S+/) });
    expect(cli("devices", "revoke", "--data", dir).code).toBe(2);
    expect(cli("keys", "rotate", "bogus", "--data", dir).code).toBe(2);
    // Flag values the CLI checks itself are bad usage too, whatever module parses them.
    const soon = cli("tokens", "create", "--data", dir, "--expires", "soon");
    expect({ code: soon.code, err: soon.err }).toEqual({ code: 2, err: expect.stringContaining('gateway tokens create: --expires: Invalid duration "soon"') });
    // ...and the error names the flag, whichever command takes a duration.
    expect(cli("registry", "gc", "--data", dir, "--grace", "1q").err).toStartWith('gateway registry gc: --grace: Invalid duration "1q"');
    expect(cli("serve", "--data", join(dir, "never"), "--tuf-expiry", "timestamp=zz").err).toStartWith('gateway serve: --tuf-expiry timestamp: Invalid duration "zz"');
    // A key is never written into a folder the user did not make (a typo would hide a private key).
    const typo = cli("keys", "generate", "--out", join(dir, "no-such-folder", "alice"));
    expect({ code: typo.code, err: typo.err, made: existsSync(join(dir, "no-such-folder")) }).toEqual({ code: 2, err: expect.stringContaining(`--out ${join(dir, "no-such-folder", "alice")}: the folder ${join(dir, "no-such-folder")} does not exist`), made: false });
    // The root key is never rotated online: the command says which ones are, and how root is.
    expect(cli("keys", "rotate", "bogus", "--data", dir).err).toStartWith("gateway keys rotate: give one role: targets, snapshot, timestamp\n");
    expect(cli("keys", "rotate", "root", "--data", dir).err).toStartWith("gateway keys rotate: the root key is not rotated here: draft, sign and install a new root with gateway keys init-root / sign-root / push-root");
    const token = cli("tokens", "list", "--server", g.url, "--token", "not-a-token");
    expect({ code: token.code, err: token.err }).toEqual({ code: 2, err: expect.stringContaining("Invalid token: expected <secret>.<sha256 hex of the CA certificate>") });
    expect(cli("serve").code).toBe(2);
    // A stray word is not silently dropped.
    const stray = cli("tokens", "list", "--data", dir, "extra");
    expect({ code: stray.code, err: stray.err, out: stray.out }).toEqual({ code: 2, err: expect.stringContaining("unexpected argument 'extra'"), out: "" });
    expect(cli("devices", "show", "--data", dir, "no-such-uuid").err).not.toContain("unexpected argument"); // commands that take words still do
  }, 60_000);

  test("--help shows the exit-code table", () => {
    const help = cli("--help");
    expect(help.code).toBe(0);
    expect(help.out).toContain("Exit codes:");
    expect(help.out).toMatch(/ 4 +the gateway could not be reached/);
    expect(help.out).toMatch(/ 5 +--server is not the gateway the token was made for: its CA does not match the token's pin, or it serves no CA/);
  });

  test("a group of commands has --help too: its commands and what each does", () => {
    const help = cli("keys", "--help");
    expect(help.code).toBe(0);
    expect(help.out).toContain("Usage: gateway keys <command> [flags]");
    expect(help.out).toMatch(/ keys rotate +Rotate an online TUF key/);
    expect(help.out).toMatch(/ keys push-root +/);
    // Without --help the group name alone is still a usage error that names the choices.
    const bare = cli("keys");
    expect(bare.code).toBe(2);
    expect(bare.err).toContain("choose one of: rotate");
    // `help COMMAND` is `COMMAND --help`.
    const viaHelp = cli("help", "keys", "rotate");
    expect(viaHelp.code).toBe(0);
    expect(viaHelp.out).toContain("Usage: gateway keys rotate");
  });

  test("devices list and show strip control characters a device put in its name", async () => {
    const ca = await readFile(join(dir, "pki", "ca.pem"), "utf8");
    const admin = (await readFile(join(dir, "admin-token"), "utf8")).trim();
    const k = await makeDeviceCsr();
    const name = "evil\x1b[2J\x1b[H\r\nFORGED 00000000-0000-4000-8000-000000000000 fine\x9b\u202e";
    const reg = await tlsFetch({ ca })(`${g.url}/devices`, {
      ...post({ name, uuid: k.uuid, csr: k.csrPem, "hardware-id": "arm64-linux" }),
      headers: { "content-type": "application/json", authorization: `Bearer ${admin}` },
    });
    expect(reg.status).toBe(201);
    const list = cli("devices", "list", "--data", dir);
    expect(list.code).toBe(0);
    const lines = list.out.trimEnd().split("\n");
    const devices = (JSON.parse(cli("devices", "list", "--data", dir, "--format", "json").out) as { devices: unknown[] }).devices;
    expect(lines).toHaveLength(1 + devices.length); // no line forged by the name
    for (const out of [list.out, cli("devices", "show", k.uuid, "--data", dir).out])
      expect(out.replaceAll("\n", "")).not.toMatch(/[\x00-\x1f\x7f-\x9f\u202e]/);
    expect(list.out).toContain("evil[2J[HFORGED");
    // JSON keeps the value as it is (escaped), for scripts.
    expect(JSON.stringify(devices)).toContain("\\u001b[2J");
  }, 60_000);

  test("devices show --format json is compact and fast on a 40,000-deep stored value", async () => {
    const ca = await readFile(join(dir, "pki", "ca.pem"), "utf8");
    const admin = (await readFile(join(dir, "admin-token"), "utf8")).trim();
    const k = await makeDeviceCsr();
    const reg = await tlsFetch({ ca })(`${g.url}/devices`, {
      ...post({ name: "deep", uuid: k.uuid, csr: k.csrPem, "hardware-id": "arm64-linux" }),
      headers: { "content-type": "application/json", authorization: `Bearer ${admin}` },
    });
    expect(reg.status).toBe(201);
    // Stored before intake capped nesting: written straight into the gateway's database.
    const db = new Database(join(dir, "gateway.db"));
    db.exec("PRAGMA busy_timeout = 5000");
    db.query("INSERT INTO system_info (device_uuid, kind, body, updated_at) VALUES (?, 'hardware', ?, ?)").run(
      k.uuid,
      `{"cpu":${"[".repeat(40_000)}${"]".repeat(40_000)}}`,
      new Date().toISOString(),
    );
    db.close();
    const t0 = Date.now();
    const show = cli("devices", "show", k.uuid, "--data", dir, "--format", "json");
    expect(show.code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(show.out.trimEnd().split("\n")).toHaveLength(1);
    expect(show.out.length).toBeLessThan(64 * 1024);
    expect(JSON.parse(show.out).systemInfo.hardware).toMatch(/not shown/);
  }, 60_000);

  test("tokens create --role publish: the token lists targets but not devices; tokens revoke ends it", async () => {
    const created = cli("tokens", "create", "--data", dir, "--role", "publish", "--name", "ci", "--format", "json");
    expect(created.code).toBe(0);
    const pub = JSON.parse(created.out) as { id: string; token: string; role: string };
    expect(pub.role).toBe("publish");
    expect(cli("targets", "list", "--server", g.url, "--token", pub.token).code).toBe(0);
    const devices = cli("devices", "list", "--server", g.url, "--token", pub.token);
    expect(devices.code).toBe(3);
    expect(devices.err).toContain("needs an admin token");
    expect(cli("keys", "rotate", "targets", "--server", g.url, "--token", pub.token).code).toBe(3);
    expect(cli("tokens", "list", "--data", dir).out).toMatch(new RegExp(`${pub.id}\\s+publish\\s+ci`));
    expect(cli("tokens", "revoke", pub.id, "--data", dir).code).toBe(0);
    expect(cli("targets", "list", "--server", g.url, "--token", pub.token).code).toBe(3);
    expect(cli("tokens", "create", "--data", dir, "--role", "publish", "--tag", "x").code).toBe(2);
    expect(cli("tokens", "create", "--data", dir, "--role", "root").code).toBe(2);
    expect(cli("tokens", "create", "--data", dir, "--max-uses", "0").code).toBe(2);
  }, 60_000);

  test("devices tag sets a device's tags", async () => {
    const { devices } = JSON.parse(cli("devices", "list", "--data", dir, "--format", "json").out) as { devices: { uuid: string; revokedAt: string | null }[] };
    const uuid = devices.find((d) => !d.revokedAt)!.uuid;
    const r = cli("devices", "tag", uuid, "qa,prod", "--data", dir);
    expect(r.code).toBe(0);
    expect(r.out).toContain("qa,prod");
    expect(JSON.parse(cli("devices", "show", uuid, "--data", dir, "--format", "json").out).tags).toEqual(["qa", "prod"]);
    expect(cli("devices", "tag", uuid, "--data", dir).code).toBe(2);
    // A tag given twice is one tag, where first given (it was stored twice); so for a registration token's --tag.
    const twice = cli("devices", "tag", uuid, "prod,qa,prod", "--data", dir);
    expect([twice.code, twice.out]).toEqual([0, `${uuid}: tags prod,qa\n`]);
    expect(JSON.parse(cli("devices", "show", uuid, "--data", dir, "--format", "json").out).tags).toEqual(["prod", "qa"]);
    expect(r.err).toBe(""); // its tags are the gateway's: no warning
    // A device that chooses its own tags: stored, with a warning that its next check-in replaces them.
    const open = JSON.parse(cli("tokens", "create", "--data", dir, "--allow-device-tags", "--format", "json").out) as { token: string };
    const k = await makeDeviceCsr();
    const ca = await readFile(join(dir, "pki", "ca.pem"), "utf8");
    const reg = await tlsFetch({ ca })(`${g.url}/devices`, {
      ...post({ name: "chooser", uuid: k.uuid, csr: k.csrPem, "hardware-id": "arm64-linux", tags: ["beta"] }),
      headers: { "content-type": "application/json", authorization: `Bearer ${open.token}` },
    });
    expect(reg.status).toBe(201);
    const chooser = cli("devices", "tag", k.uuid, "main", "--data", dir);
    expect([chooser.code, chooser.out]).toEqual([0, `${k.uuid}: tags main\n`]);
    expect(chooser.err).toBe(
      `warning: ${k.uuid} chooses its own tags (its registration token was made with --allow-device-tags): its next check-in replaces these with the tags it follows\n`,
    );
    const token = cli("tokens", "create", "--data", dir, "--tag", "beta", "--tag", "main,beta", "--format", "json");
    expect(token.code).toBe(0);
    const { id } = JSON.parse(token.out) as { id: string };
    const { tokens } = JSON.parse(cli("tokens", "list", "--data", dir, "--format", "json").out) as { tokens: { id: string; tags?: string[] }[] };
    expect(tokens.find((t) => t.id === id)?.tags).toEqual(["beta", "main"]);
  }, 60_000);

  test("SIGTERM stops the gateway gracefully", async () => {
    const g2 = await startGateway();
    expect(await Bun.file(join(g2.dataDir, "serve.json")).exists()).toBe(true);
    const t0 = Date.now();
    await g2.stop(); // SIGTERM; SIGKILL only after 10 s
    expect(Date.now() - t0).toBeLessThan(9000);
    expect(await readFile(g2.logFile, "utf8")).toContain("gateway: stopped");
    expect(await Bun.file(join(g2.dataDir, "serve.json")).exists()).toBe(false);
    // An admin command on the stopped gateway's data dir: it cannot be reached (4), as a --server that does not answer;
    // a data dir that is not there is a typo (2); a --server without a token says which flag is missing.
    const stopped = cli("tokens", "list", "--data", g2.dataDir);
    expect({ code: stopped.code, err: stopped.err }).toEqual({ code: 4, err: `gateway tokens list: no gateway is running on ${g2.dataDir} (no serve.json): start it, or pass --server\n` });
    const typo = cli("tokens", "list", "--data", `${g2.dataDir}-typo`);
    expect({ code: typo.code, err: typo.err }).toEqual({ code: 2, err: expect.stringContaining(`--data ${g2.dataDir}-typo: no such folder`) });
    // A folder that is no data dir at all is not "a gateway that is not running": it says so (1).
    const notOne = cli("tokens", "list", "--data", dirname(g2.dataDir));
    expect({ code: notOne.code, err: notOne.err }).toEqual({ code: 1, err: expect.stringContaining(`${dirname(g2.dataDir)} is not a gateway data dir`) });
    const noToken = Bun.spawnSync([process.execPath, MAIN, "tokens", "list", "--server", g.url], { stdout: "pipe", stderr: "pipe", env: { ...process.env, GATEWAY_TOKEN: "" } });
    expect(noToken.stderr.toString()).toStartWith("gateway tokens list: --server needs --token TOKEN");
  }, 60_000);

  test("--data DIR uses DIR/admin-token, not a GATEWAY_TOKEN left in the environment (a publish token in CI)", () => {
    const made = cli("tokens", "create", "--data", g.dataDir, "--role", "publish", "--format", "json");
    expect(made.code, made.err).toBe(0);
    const publish = (JSON.parse(made.out) as { token: string }).token;
    const withEnv = (...args: string[]) => {
      const r = Bun.spawnSync([process.execPath, MAIN, ...args], { stdout: "pipe", stderr: "pipe", env: { ...process.env, GATEWAY_TOKEN: publish } });
      return { code: r.exitCode, err: r.stderr.toString() };
    };
    expect(withEnv("tokens", "list", "--data", g.dataDir)).toEqual({ code: 0, err: "" });
    // Without --data the variable is the token: a publish token may not list tokens.
    expect(withEnv("tokens", "list", "--server", g.url).code).toBe(3);
  }, 60_000);

  // The gateway makes its data dir 0700 for the user it runs as: another user (a missing sudo) is told that, not "no data dir".
  test.skipIf(process.getuid?.() !== 0)("a user who may not read the data dir, or make it, is told so and what to do", async () => {
    const top = await tempDir("perm-");
    chmodSync(top, 0o755);
    const data = join(top, "data");
    await mkdir(data, { mode: 0o700 });
    await Bun.write(join(data, "factory.json"), '{"name":"main"}\n');
    const asNobody = (...args: string[]) => {
      const r = Bun.spawnSync(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, MAIN, ...args], { stdout: "pipe", stderr: "pipe" });
      return { code: r.exitCode, err: r.stderr.toString() };
    };
    const sudo = "run as the user that owns it (the one gateway serve runs as) or as root";
    expect(asNobody("tokens", "create", "--data", data)).toEqual({ code: 1, err: `gateway tokens create: Cannot read ${data}: permission denied; ${sudo}, or give --server URL --token TOKEN\n` });
    expect(asNobody("serve", "--data", data)).toEqual({ code: 1, err: `gateway serve: Cannot read ${data}: permission denied; ${sudo}\n` });
    expect(asNobody("registry", "gc", "--data", data)).toEqual({ code: 1, err: `gateway registry gc: Cannot read ${join(data, "factory.json")}: permission denied; ${sudo}\n` });
    const made = join(top, "new");
    expect(asNobody("serve", "--data", made, "--listen", "127.0.0.1:0")).toEqual({
      code: 1,
      err: `gateway serve: Cannot make the data dir ${made}: permission denied; make it first for the user gateway serve runs as (install -d -m 0700 -o USER ${made}), or run gateway serve as root\n`,
    });
  }, 60_000);

  test.skipIf(process.getuid?.() !== 0)("a data dir on a read-only file system, or where no folder can be made, is said in words, not as an errno", async () => {
    const ro = join(await tempDir("ro-"), "mnt");
    await mkdir(ro);
    expect((await run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", ro])).code).toBe(0);
    try {
      const data = join(ro, "data");
      expect(cli("serve", "--data", data, "--listen", "127.0.0.1:0")).toMatchObject({
        code: 1,
        err: `gateway serve: Cannot make the data dir ${data}: the file system is read-only; give a --data on a writable one (it holds the database, the keys and the registry)\n`,
      });
    } finally {
      await run(["umount", ro]);
    }
    expect(cli("serve", "--data", "/proc/gateway-data", "--listen", "127.0.0.1:0")).toMatchObject({ code: 1, err: "gateway serve: Cannot make the data dir /proc/gateway-data: the file system there takes no new folders (give a --data on a disk)\n" });
  }, 60_000);

  test("a browser opening the gateway's URL is sent to the dashboard, which asks it to sign in", async () => {
    const get = (path: string) => tlsFetch({ ca: g.caPem })(`${g.url}${path}`, { redirect: "manual" });
    const root = await get("/");
    expect({ status: root.status, location: root.headers.get("location") }).toEqual({ status: 302, location: "/ui/" });
    const ui = await get("/ui/");
    expect({ status: ui.status, location: ui.headers.get("location") }).toEqual({ status: 303, location: "/ui/login" });
  });

  test("registry gc runs on the data dir", () => {
    const r = cli("registry", "gc", "--data", dir, "--format", "json");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ blobsRemoved: 0 });
  }, 60_000);

  test("registry gc deletes nothing outside a registry: a mistyped --data or a --registry-dir that is not registry storage is an error", async () => {
    const missing = cli("registry", "gc", "--data", join(dir, "no-such-dir"));
    expect(missing.code).toBe(2); // as every command that takes --data says it
    expect(missing.err).toContain(`--data ${join(dir, "no-such-dir")}: no such folder (the gateway's data dir)`);
    const notOne = cli("registry", "gc", "--data", dirname(dir));
    expect(notOne.code).toBe(1);
    expect(notOne.err).toContain(`${dirname(dir)} is not a gateway data dir`);
    expect(missing.out).toBe("");

    // Some other program's content-addressed files, old enough to be past the grace period.
    const other = join(dirname(dir), "not-a-registry");
    const file = join(other, "blobs", "sha256", "a".repeat(64));
    await Bun.write(file, "someone else's data");
    await utimes(file, new Date(0), new Date(0));
    const refused = cli("registry", "gc", "--data", dir, "--registry-dir", other, "--grace", "1s");
    expect(refused.code).toBe(1);
    expect(refused.err).toContain(`${other} is not the gateway registry's storage (it has blobs/sha256 but no repositories/): nothing removed`);
    expect(await Bun.file(file).text()).toBe("someone else's data");

    const absent = cli("registry", "gc", "--data", dir, "--registry-dir", join(other, "typo"));
    expect(absent.code).toBe(1);
    expect(absent.err).toContain("(no such directory): nothing removed");
  }, 60_000);

  test("a failed export leaves --out as it found it: absent, or empty", async () => {
    const absent = join(dirname(dir), "bundle-new");
    const empty = join(dirname(dir), "bundle-empty");
    await mkdir(empty);
    for (const out of [absent, empty]) {
      const r = cli("export", "--data", dir, "--target", "99", "--hwid", "amd64-linux", "--out", out);
      expect(r.code).toBe(20);
      expect(r.err).toContain("No target with version 99 for hardware id amd64-linux");
    }
    expect(await Bun.file(join(absent, "tuf", "1.root.json")).exists()).toBe(false);
    expect(existsSync(absent)).toBe(false);
    expect(readdirSync(empty)).toEqual([]);
    // A plain-HTTP registry given as a URL would match no image's registry: refused before anything is asked.
    const url = cli("export", "--data", dir, "--target", "1", "--hwid", "amd64-linux", "--out", absent, "--insecure-registry", "http://127.0.0.1:5000");
    expect({ code: url.code, err: url.err }).toEqual({ code: 2, err: expect.stringContaining('--insecure-registry: expected a registry host[:port] as image references name it (e.g. 127.0.0.1:5000), got "http://127.0.0.1:5000"') });
    expect(existsSync(absent)).toBe(false);
    // A folder in use, or one whose parent is a typo, is bad usage, said before the gateway is asked.
    await Bun.write(join(empty, "keep.txt"), "mine");
    for (const [out, why] of [[empty, `${empty} is not empty`], [join(absent, "deeper"), `the folder ${absent} does not exist`]] as const) {
      const r = cli("export", "--data", dir, "--target", "1", "--hwid", "amd64-linux", "--out", out);
      expect({ code: r.code, err: r.err }).toEqual({ code: 2, err: expect.stringContaining(`Cannot write the bundle into --out ${out}: ${why}`) });
    }
    expect(readdirSync(empty)).toEqual(["keep.txt"]);
    expect(existsSync(absent)).toBe(false);
  }, 60_000);

  test("serve refuses a signer lease under a second before touching the data dir", async () => {
    const fresh = join(dir, "never-created");
    for (const lease of ["0.5", "abc"]) {
      const r = cli("serve", "--data", fresh, "--listen", "127.0.0.1:0", "--signer-lease", lease);
      expect(r.code).toBe(2);
      expect(r.err).toContain("--signer-lease must be");
    }
    expect(await Bun.file(join(fresh, "factory.json")).exists()).toBe(false);
  }, 60_000);

  test("serve refuses timer values past what a timer can hold (they would fire at once, in a loop) before touching the data dir", async () => {
    const fresh = join(dir, "never-created-2");
    for (const [flag, value, most] of [["signer-lease", "1e12", "3600"], ["signer-lease", "99999999", "3600"], ["rollout-tick", "3601", "3600"], ["idle-timeout", "86401", "86400"], ["polling-seconds", "604801", "604800"]] as const) {
      const r = cli("serve", "--data", fresh, "--listen", "127.0.0.1:0", `--${flag}`, value);
      expect({ flag, value, code: r.code, err: r.err.trim() }).toEqual({
        flag,
        value,
        code: 2,
        err: expect.stringContaining(value === "1e12" ? `--${flag} must be a positive number, got "1e12"` : `--${flag} must be at most ${most}, got "${value}"`),
      });
    }
    expect(await Bun.file(join(fresh, "factory.json")).exists()).toBe(false);
  }, 60_000);

  test("serve says which --tls-cert/--tls-key it cannot use, before touching the data dir", async () => {
    const fresh = join(dir, "never-created-3");
    const missing = cli("serve", "--data", fresh, "--listen", "127.0.0.1:0", "--tls-cert", join(dir, "nope.pem"), "--tls-key", join(dir, "pki", "server.key"));
    expect({ code: missing.code, err: missing.err }).toEqual({ code: 2, err: expect.stringContaining(`--tls-cert ${join(dir, "nope.pem")}: no such file`) });
    const notPem = cli("serve", "--data", fresh, "--listen", "127.0.0.1:0", "--tls-cert", join(dir, "pki", "ca.pem"), "--tls-key", join(dir, "factory.json"));
    expect({ code: notPem.code, err: notPem.err }).toEqual({ code: 2, err: expect.stringContaining(`Cannot read --tls-key ${join(dir, "factory.json")}: it holds no PEM`) });
    expect(existsSync(fresh)).toBe(false);
  }, 60_000);

  test("serve on a port that is in use says which port and why (Bun said 'Failed to listen at 127.0.0.1'), and never takes the signer role", async () => {
    const holder = createServer().listen(0, "127.0.0.1");
    await once(holder, "listening");
    const port = (holder.address() as AddressInfo).port;
    try {
      const tls = cli("serve", "--data", join(dir, "port-in-use"), "--listen", `127.0.0.1:${port}`);
      expect({ code: tls.code, err: tls.err }).toEqual({ code: 1, err: expect.stringContaining(`gateway serve: Cannot listen on 127.0.0.1:${port}: the port is in use (another gateway, or another program)\n`) });
      const plain = cli("serve", "--data", join(dir, "port-in-use"), "--listen", "127.0.0.1:0", "--proxy-listen", `127.0.0.1:${port}`, "--trust-proxy", "127.0.0.1");
      expect({ code: plain.code, err: plain.err }).toEqual({ code: 1, err: expect.stringContaining(`gateway serve: Cannot listen on 127.0.0.1:${port}: the port is in use`) });
      // A replica that cannot listen never takes the signer role (it used to, and said so, before failing).
      expect(`${tls.err}${plain.err}`).not.toContain("TUF signer");
      // Nor does a start that cannot listen make a data dir: no fresh CA, keys or admin token left behind.
      expect(existsSync(join(dir, "port-in-use"))).toBe(false);
      const noFolder = cli("serve", "--data", join(dir, "socket-nodir"), "--listen", "127.0.0.1:0", "--proxy-listen", `unix:${join(dir, "no-such-dir", "proxy.sock")}`);
      expect({ code: noFolder.code, err: noFolder.err }).toEqual({ code: 1, err: expect.stringContaining(`Cannot listen on ${join(dir, "no-such-dir", "proxy.sock")}: the folder ${join(dir, "no-such-dir")} does not exist`) });
      expect(existsSync(join(dir, "socket-nodir"))).toBe(false);
    } finally {
      holder.close();
    }
  }, 60_000);

  test("serve refuses a bad --listen, --public-url, --trust-proxy, --factory or --registry-dir as bad usage (exit 2), naming the flag, and makes no data dir", () => {
    const cases: [string[], string][] = [
      [["--listen", "127.0.0.1:abc"], 'Invalid --listen "127.0.0.1:abc"'],
      [["--public-url", "notaurl"], "--public-url notaurl: expected https://HOST[:PORT]"],
      [["--public-url", "http://gw.example.com"], "--public-url http://gw.example.com: the gateway speaks HTTPS only: use https://gw.example.com"],
      [["--public-url", "https://gw.example.com/ota?x=1"], "--public-url https://gw.example.com/ota?x=1: a gateway URL has no query (?) or fragment (#): use https://gw.example.com/ota"],
      [["--trust-proxy", "notacidr"], 'Invalid --trust-proxy entry "notacidr"'],
      [["--factory", "Bad Name!"], 'Invalid --factory "Bad Name!"'],
      // Not a repository name's first part: every publish's push would fail.
      [["--factory", "acme-"], 'Invalid --factory "acme-": use lower-case letters and digits, joined by -, _ or __ (at most 63, starting and ending with a letter or digit)'],
      [["--factory", "a___b"], 'Invalid --factory "a___b"'],
      // Two registries, and a header no proxy is trusted to send: each quietly did less before.
      [["--external-registry-service", "fleet-registry", "--registry-dir", join(dir, "reg-too")], "--registry-dir and --external-registry-service name two registries"],
      [["--client-cert-header", "x-ssl-client-cert"], "--client-cert-header x-ssl-client-cert is read only from trusted proxies: give --trust-proxy"],
      [["--registry-dir", MAIN], `--registry-dir ${MAIN} is a file, not a folder`],
    ];
    for (const [flags, said] of cases) {
      const data = join(dir, `bad-flag-${flags[0]!.slice(2)}`);
      const r = cli("serve", "--data", data, ...(flags[0] === "--listen" ? [] : ["--listen", "127.0.0.1:0"]), ...flags);
      expect({ flags, code: r.code, err: r.err, made: existsSync(data) }).toEqual({ flags, code: 2, err: expect.stringContaining(`gateway serve: ${said}`), made: false });
    }
  }, 60_000);

  test("serve on a --data that is a file, or under one, is bad usage (exit 2) naming --data, not 'any other error'", async () => {
    const said = async (...argv: string[]) => {
      const { code, err } = await runCliCaptured({ name: "gateway", version: "0", summary: "", commands, exitCodeFor }, argv);
      return { code, err: err.split("\n")[0] };
    };
    expect(await said("serve", "--data", MAIN)).toEqual({ code: 2, err: `gateway serve: --data ${MAIN} is a file, not a folder: give the gateway's data dir (made on first start)` });
    expect(await said("serve", "--data", join(MAIN, "data"))).toEqual({ code: 2, err: `gateway serve: --data ${join(MAIN, "data")}: ${MAIN} is a file, not a folder` });
  });

  test("serve refuses a bad --trust-proxy as bad usage before it logs taking certificates from it, with --proxy-listen too (that was exit 1)", async () => {
    const said = async (...argv: string[]) => {
      const { code, err } = await runCliCaptured({ name: "gateway", version: "0", summary: "", commands, exitCodeFor }, argv);
      return { code, err };
    };
    const data = join(dir, "bad-trust-proxy");
    const refused = { code: 2, err: `gateway serve: Invalid --trust-proxy entry "notacidr": expected an address or CIDR such as 10.0.0.0/8 or ::1/128\nRun 'gateway serve --help' for usage.\n` };
    expect(await said("serve", "--data", data, "--trust-proxy", "10.0.0.1,notacidr")).toEqual(refused);
    expect(await said("serve", "--data", data, "--proxy-listen", "127.0.0.1:1", "--trust-proxy", "notacidr")).toEqual(refused);
    expect(existsSync(data)).toBe(false);
  });

  /** Starts `gateway serve ARGS` and reads its log until it says where it listens (HOST:PORT). */
  const serving = async (...args: string[]) => {
    const p = Bun.spawn([process.execPath, MAIN, "serve", ...args], { stdout: "pipe", stderr: "pipe" });
    const reader = p.stderr.getReader();
    let said = "";
    const deadline = Date.now() + 30_000;
    while (!/gateway listening on https:\/\/(\S+)\n/.test(said) && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      said += new TextDecoder().decode(value);
    }
    reader.releaseLock();
    const listening = /gateway listening on https:\/\/(\S+)\n/.exec(said);
    return { p, said, listening: listening?.[1] };
  };

  test("serve on a wildcard --listen: the admin commands find it with --data (serve.json names loopback, which its certificate covers)", async () => {
    const data = join(dir, "wildcard");
    const { p, said, listening } = await serving("--data", data, "--listen", "0.0.0.0:0");
    try {
      expect({ said: listening ? "listening" : said }).toEqual({ said: "listening" });
      expect(listening).toStartWith("0.0.0.0:");
      // The URL its targets will name is said, with what to do if devices know the machine by another name.
      const port = listening!.split(":")[1];
      expect(said).toContain(`gateway: devices and targets use https://${hostname()}:${port} (this machine's hostname, as --listen 0.0.0.0 names no host): give --public-url`);
      const made = cli("tokens", "create", "--data", data, "--role", "viewer");
      expect({ code: made.code, err: made.err }).toEqual({ code: 0, err: expect.stringContaining("viewer token ") });
      expect(cli("devices", "list", "--data", data).code).toBe(0);
    } finally {
      p.kill();
      await p.exited;
    }
  }, 60_000);

  test("serve with a SQLite --db inside a new data dir starts; a second serve on that data dir names the running one", async () => {
    const data = join(dir, "db-inside");
    const { p, said, listening } = await serving("--data", data, "--db", join(data, "store.db"), "--listen", "127.0.0.1:0");
    try {
      expect({ said: listening ? "listening" : said }).toEqual({ said: "listening" });
      expect(existsSync(join(data, "store.db"))).toBe(true);
      const again = cli("serve", "--data", data, "--listen", listening!);
      expect({ code: again.code, err: again.err }).toEqual({ code: 1, err: expect.stringContaining(`${data} is in use by the gateway running as PID ${p.pid}`) });
    } finally {
      p.kill();
      await p.exited;
    }
  }, 60_000);

  test("serve says which --db it cannot use and why (Bun said 'Failed to connect' or 'unable to open database file')", async () => {
    const fresh = join(dir, "never-created-db");
    const other = cli("serve", "--data", fresh, "--listen", "127.0.0.1:0", "--db", "mysql://u:pw@127.0.0.1/x");
    expect({ code: other.code, err: other.err }).toEqual({ code: 2, err: expect.stringContaining("Cannot use --db mysql://u:***@127.0.0.1/x: give a postgres:// URL or a SQLite file path") });
    expect(existsSync(fresh)).toBe(false);
    const holder = createServer().listen(0, "127.0.0.1");
    await once(holder, "listening");
    const closed = (holder.address() as AddressInfo).port;
    holder.close();
    await once(holder, "close");
    const refused = cli("serve", "--data", join(dir, "db-refused"), "--listen", "127.0.0.1:0", "--db", `postgres://gw:secret@127.0.0.1:${closed}/gw`);
    expect({ code: refused.code, err: refused.err }).toEqual({
      code: 1,
      err: expect.stringContaining(`Cannot use the database postgres://gw:***@127.0.0.1:${closed}/gw: connection refused (is PostgreSQL running there?)`),
    });
    expect(existsSync(join(dir, "db-refused"))).toBe(false); // no CA and keys made for a database that cannot be reached
    // Bun.SQL says "connection refused" for a name that does not resolve too: the gateway says which it is.
    const unknown = cli("serve", "--data", join(dir, "db-unknown"), "--listen", "127.0.0.1:0", "--db", "postgres://gw@no-such-host.invalid/gw");
    expect({ code: unknown.code, err: unknown.err }).toEqual({
      code: 1,
      err: expect.stringContaining(
        "Cannot use the database postgres://gw@no-such-host.invalid/gw: the host name no-such-host.invalid could not be resolved (check the host in --db, and that this machine's DNS or /etc/hosts knows it)",
      ),
    });
    expect(unknown.err).not.toContain("refused");
    expect(existsSync(join(dir, "db-unknown"))).toBe(false);
    const noDir = cli("serve", "--data", join(dir, "db-nodir"), "--listen", "127.0.0.1:0", "--db", join(dir, "no-such-dir", "gw.db"));
    expect({ code: noDir.code, err: noDir.err }).toEqual({ code: 1, err: expect.stringContaining(`Cannot open the SQLite database ${join(dir, "no-such-dir", "gw.db")}: its directory ${join(dir, "no-such-dir")} does not exist`) });
  }, 60_000);

  test("runs from any working directory, not only the checkout's (the dashboard's JSX names its runtime)", () => {
    // bun takes tsconfig.json from the working directory's project: outside the checkout the
    // dashboard's .tsx files compiled against React, which is not installed, and nothing started.
    const elsewhere = dirname(dir);
    for (const args of [["--help"], ["tokens", "list", "--data", dir]]) {
      const r = Bun.spawnSync([process.execPath, MAIN, ...args], { cwd: elsewhere, stdout: "pipe", stderr: "pipe" });
      expect({ args, code: r.exitCode, err: r.stderr.toString() }).toEqual({ args, code: 0, err: "" });
    }
  }, 60_000);
});
