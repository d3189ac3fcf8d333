/**
 * What a user typing fioup commands sees for input that cannot be right, through the real CLI
 * (`bun fioup/main.ts`, a temp FIOUP_ROOT, no gateway, no container engine): a mistyped
 * --sota-dir is said and leaves nothing behind, a malformed flag or argument is bad usage (exit 2)
 * naming it, and a gateway nothing answers for is the exit code `fioup --help` gives it.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createCa, issueServerCert, signDeviceCsr } from "../../gateway/pki/ca.ts";
import { freePort, tempDir } from "../harness/tmp.ts";

const BUN = process.execPath;
const MAIN = join(import.meta.dir, "../../fioup/main.ts");
const TOKEN = `s.${"a".repeat(64)}`;

function fioup(root: string, ...args: string[]) {
  const env: Record<string, string | undefined> = { ...process.env, FIOUP_ROOT: root };
  delete env.FIOUP_SOTA_DIR;
  delete env.FIOUP_TOKEN;
  const p = Bun.spawnSync([BUN, MAIN, ...args], { env: env as Record<string, string> });
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

/** Every path under `dir`, relative to it. */
const tree = (dir: string): string[] => readdirSync(dir, { recursive: true }).map(String).sort();

describe("fioup CLI input", () => {
  test("a --sota-dir that does not exist is said (not registered, exit 11) and nothing is created there", async () => {
    const root = await tempDir("fioup-cli-input-");
    const typo = join(root, "var/sotaa");
    const why = `no device state in ${typo}: the folder does not exist (is --sota-dir right?)`;
    for (const cmd of [["status", "--no-apps"], ["early-start"], ["lock"], ["unlock"], ["check"], ["update"]]) {
      const r = fioup(root, ...cmd, "--sota-dir", typo);
      expect({ cmd, code: r.code, err: r.stderr }).toEqual({ cmd, code: 11, err: expect.stringContaining(why) });
      expect({ cmd, created: tree(root) }).toEqual({ cmd, created: [] });
    }
    // `fioup --help` says what 11 means, this case included.
    expect(fioup(root, "--help").stdout).toMatch(/^ +11 +not registered, or no device state where --sota-dir points/m);
    // Without --sota-dir, the default folder missing is a device neither registered nor preloaded.
    const bare = fioup(root, "status", "--no-apps");
    expect({ code: bare.code, err: bare.stderr }).toEqual({ code: 11, err: expect.stringContaining(`no device state in ${join(root, "var/sota")}: the folder does not exist (not registered or preloaded yet?`) });
    expect(tree(root)).toEqual([]);
  });

  test("status and early start read a device folder without a database yet, and create none", async () => {
    const root = await tempDir("fioup-cli-input-");
    const sota = join(root, "var/sota");
    mkdirSync(sota, { recursive: true });
    const status = fioup(root, "status", "--no-apps", "--format", "json");
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ registered: false, current: null, updates: [], queuedEvents: 0 });
    const early = fioup(root, "early-start", "--format", "json");
    expect(early.code, early.stderr).toBe(0);
    expect(JSON.parse(early.stdout)).toEqual({ skipped: "no preloaded target", apps: [] });
    expect(tree(root)).toEqual(["var", "var/sota"]);
    expect(existsSync(join(sota, "fioup.db"))).toBe(false);
  });

  test("lock --reason \"\" (a script's empty $WHY) takes the lock, without a reason", async () => {
    const root = await tempDir("fioup-cli-input-");
    mkdirSync(join(root, "var/sota"), { recursive: true });
    expect(fioup(root, "lock", "--reason", "surgery").code).toBe(0);
    const again = fioup(root, "lock", "--reason", "", "--format", "json");
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ name: "fioup", alreadyHeld: false });
    expect(JSON.parse(again.stdout).reason || null).toBeNull();
  });

  test("agent: a --mqtt that is not a broker URL is bad usage (exit 2) naming the flag", async () => {
    const root = await tempDir("fioup-cli-input-");
    for (const bad of ["notaurl", "http://broker:1883", "mqtt://", ""]) {
      const r = fioup(root, "agent", "--mqtt", bad);
      expect({ bad, code: r.code, err: r.stderr }).toEqual({
        bad,
        code: 2,
        err: expect.stringContaining(`fioup agent: --mqtt: expected an mqtt:// (or tcp://), mqtts:// (or tls://), ws:// or wss:// URL with a host, got "${bad}"`),
      });
    }
  });

  test("agent: a TLS file or plain-HTTP registry given as a flag that cannot be used is bad usage (exit 2) naming the flag", async () => {
    const root = await tempDir("fioup-cli-input-");
    const notPem = join(root, "not.pem");
    writeFileSync(notPem, "hello\n");
    const cases: [string[], string][] = [
      [["--ca", join(root, "nope.pem")], `--ca ${join(root, "nope.pem")}: no such file`],
      [["--client-cert", root], `--client-cert ${root}: it is a directory`],
      [["--client-key", notPem], `--client-key ${notPem}: it holds no PEM`],
      [["--insecure-registry", "http://127.0.0.1:5000"], `--insecure-registry: expected a registry host[:port] as image references name it (e.g. 127.0.0.1:5000), got "http://127.0.0.1:5000"`],
    ];
    for (const [flags, says] of cases) {
      const r = fioup(root, "agent", "--mqtt", "mqtt://127.0.0.1:1", ...flags);
      expect({ flags, code: r.code, err: r.stderr }).toEqual({ flags, code: 2, err: expect.stringContaining(`fioup agent: ${says.startsWith("--insecure") ? "" : "Cannot read "}${says}`) });
    }
  });

  test("agent: its flags are checked before the container engine, the broker and the config: a --state-dir it cannot use is bad usage (exit 2)", async () => {
    // No container engine here: a check made after the engine's said "Cannot reach the Docker Engine" (exit 1) instead.
    const root = await tempDir("fioup-cli-input-");
    const file = join(root, "afile");
    writeFileSync(file, "not a folder\n");
    const cases: [string[], string][] = [
      [["--state-dir", file], `--state-dir ${file}: it is a file, give a folder`],
      [["--state-dir", join(file, "agent")], `--state-dir ${join(file, "agent")}: ${file} is a file, not a folder`],
    ];
    for (const [flags, says] of cases) {
      const r = fioup(root, "agent", "--mqtt", "mqtt://127.0.0.1:1", ...flags);
      expect({ flags, code: r.code, err: r.stderr }).toEqual({ flags, code: 2, err: `fioup agent: ${says}\nRun 'fioup agent --help' for usage.\n` });
    }
    // A config fioup cannot read is said after the flag typed wrong, not instead of it.
    mkdirSync(join(root, "var/sota"), { recursive: true });
    writeFileSync(join(root, "var/sota/sota.toml"), "[mqtt\n");
    const r = fioup(root, "agent", "--mqtt", "mqtt://127.0.0.1:1", "--instance", "a/b");
    expect({ code: r.code, err: r.stderr }).toEqual({ code: 2, err: expect.stringContaining("fioup agent: --instance: expected an instance name") });
    expect(tree(root)).toEqual(["afile", "var", "var/sota", "var/sota/sota.toml"]);
  });

  test("register: a gateway nothing answers for is 'gateway unreachable' (31, as --help says), not a failed registration", async () => {
    const root = await tempDir("fioup-cli-input-");
    const port = await freePort();
    const r = fioup(root, "register", "--server", `https://127.0.0.1:${port}`, "--token", TOKEN);
    expect({ code: r.code, err: r.stderr }).toEqual({
      code: 31,
      err: expect.stringContaining(`Cannot register: Cannot fetch https://127.0.0.1:${port}/ca.pem: connection refused (is it running at that address?)`),
    });
    expect(fioup(root, "--help").stdout).toMatch(/^ +31 +gateway unreachable/m);
    expect(tree(root)).toEqual([]);
  });

  test("register: an answer with a certificate or TUF root the device could not use is a failed registration (32), and nothing is written", async () => {
    // A server that holds the pinned CA but answers registrations wrongly (a broken or foreign gateway).
    const [ca, other] = await Promise.all([createCa("main"), createCa("other")]);
    const tls = await issueServerCert(ca, ["127.0.0.1"]);
    let answer: "not-pem" | "other-ca" | "no-root" = "not-pem";
    const server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      tls: { cert: tls.certPem, key: tls.keyPem },
      async fetch(req) {
        const path = new URL(req.url).pathname;
        if (path === "/ca.pem") return new Response(ca.certPem);
        const body = (await req.json()) as { csr: string; uuid: string };
        const signer = answer === "other-ca" ? other : ca;
        const cert = answer === "not-pem" ? "garbage" : (await signDeviceCsr(signer, body.csr, { uuid: body.uuid, factory: "main" })).certPem;
        return Response.json({ certificate: cert, ca: ca.certPem, root: {}, config: "" });
      },
    });
    try {
      const token = `s.${ca.fingerprint}`;
      for (const [mode, why] of [
        ["not-pem", "the certificate in the answer is not a PEM certificate"],
        ["other-ca", "the certificate in the answer is not signed by the gateway's CA"],
        ["no-root", "the TUF root in the answer is not a root.json signed by its own root keys"],
      ] as const) {
        answer = mode;
        const root = await tempDir("fioup-cli-input-");
        const p = Bun.spawn([BUN, MAIN, "register", "--server", server.url.origin, "--token", token], { env: { ...process.env, FIOUP_ROOT: root }, stdout: "pipe", stderr: "pipe" });
        const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
        expect({ mode, code, err }).toEqual({ mode, code: 32, err: expect.stringContaining(`Cannot register with ${server.url.origin}: ${why}`) });
        expect({ mode, written: tree(root) }).toEqual({ mode, written: [] });
      }
    } finally {
      server.stop(true);
    }
  });

  test("a damaged device database is named, with what moving it aside costs", async () => {
    const root = await tempDir("fioup-cli-input-");
    const db = join(root, "var/sota/fioup.db");
    mkdirSync(join(root, "var/sota"), { recursive: true });
    writeFileSync(db, "this is not an SQLite database, but long enough to be read as one ".repeat(20));
    const r = fioup(root, "status", "--no-apps");
    expect({ code: r.code, err: r.stderr }).toEqual({
      code: 1,
      err: expect.stringContaining(`Cannot open the device database ${db}: file is not a database. It is damaged; move it aside (mv ${db} ${db}.damaged)`),
    });
  });

  test("register --name '' or --apps '', and a version that is not a number, are bad usage (exit 2), before anything is asked or written", async () => {
    const root = await tempDir("fioup-cli-input-");
    const name = fioup(root, "register", "--server", "https://127.0.0.1:1", "--token", TOKEN, "--name", "");
    expect({ code: name.code, err: name.stderr }).toEqual({ code: 2, err: expect.stringContaining('fioup register: --name: expected a device name (1-128 characters), got ""') });
    const long = fioup(root, "register", "--server", "https://127.0.0.1:1", "--token", TOKEN, "--name", "n".repeat(129));
    expect({ code: long.code, err: long.stderr }).toEqual({ code: 2, err: expect.stringContaining("--name: expected a device name (1-128 characters)") });
    // An --apps that names no app would register with no shortlist, which runs every app.
    for (const apps of ["", ",,"]) {
      const r = fioup(root, "register", "--server", "https://127.0.0.1:1", "--token", TOKEN, "--apps", apps);
      expect({ code: r.code, err: r.stderr }).toEqual({ code: 2, err: expect.stringContaining(`fioup register: --apps ${JSON.stringify(apps)} names no app: give at least one (without --apps, every app of the target runs)`) });
    }
    // Checked before the device is: this root is not even registered (that would be exit 11).
    for (const [cmd, bad] of [["fetch", "abc"], ["update", "v2"], ["fetch", "1.5"], ["update", ""]] as const) {
      const r = fioup(root, cmd, bad);
      expect({ cmd, bad, code: r.code, err: r.stderr }).toEqual({
        cmd,
        bad,
        code: 2,
        err: expect.stringContaining(`fioup ${cmd}: version: expected a target version: 1-15 digits, as \`fioup check\` lists them, got "${bad}"`),
      });
    }
    expect(tree(root)).toEqual([]);
  });
});
