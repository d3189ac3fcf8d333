/**
 * Flag values the gateway CLI took although they did harm: a --data folder holding someone else's
 * files, timeouts and TUF lifetimes too short for any device, a token flag the role ignores, and
 * a ceremony file that is there but cannot be read called bad usage. Each is run through the real
 * CLI in-process (parsing, message, exit code), refused before anything is written.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Root } from "@tufjs/models";
import { commands } from "../../gateway/commands/index.ts";
import { exitCodeFor } from "../../gateway/exit-codes.ts";
import { generateKey, modelKey } from "../../lib/tuf/keys.ts";
import { expiresAt, signMetadata } from "../../lib/tuf/metadata.ts";
import { runCliCaptured } from "../harness/cli.ts";
import { removeTempDir, tempDir } from "../harness/tmp.ts";

let work: string;

const gateway = { name: "gateway", version: "0", summary: "", commands, exitCodeFor };

/** One run of `gateway ARGV`: its exit code and the first line of what it said on stderr. */
const said = async (...argv: string[]) => {
  const { code, err } = await runCliCaptured(gateway, argv);
  return { code, err: err.split("\n")[0] };
};

/** Every path below `dir`, so a test can see that nothing was added or removed. */
const tree = (dir: string): string[] => readdirSync(dir, { recursive: true, encoding: "utf8" }).sort();

beforeAll(async () => {
  work = await tempDir("input-limits-");
});
afterAll(() => removeTempDir(work));

describe("serve --data", () => {
  // --tls-cert without --tls-key is refused right after the --data checks: reaching it means --data was taken.
  const taken = { code: 2, err: "gateway serve: --tls-cert and --tls-key go together" };

  test("a folder holding other files (a home folder) is refused, naming what it holds, and nothing is written", async () => {
    const home = join(work, "home");
    mkdirSync(join(home, "projects"), { recursive: true });
    for (const f of ["notes.txt", ".bashrc", "photo.jpg", "todo.md"]) writeFileSync(join(home, f), `mine: ${f}\n`);
    const before = tree(home);
    // With --tls-cert alone, a start that took this --data would stop at that flag, not serve into the folder.
    expect(await said("serve", "--data", home, "--tls-cert", "x.pem")).toEqual({
      code: 2,
      err:
        `gateway serve: --data ${home} is not a gateway data dir: it holds notes.txt, photo.jpg, projects and 1 more but none of factory.json, pki/ca.pem, pki/ca.key, admin-token, ` +
        "and the gateway would put its files among them. Nothing was written: give the data dir the gateway made, or a new or empty folder for a new one",
    });
    expect(tree(home)).toEqual(before);
  });

  test("a missing folder, an empty one (hidden files aside), a gateway data dir, one a killed first start left, and one holding only the --db and --registry-dir given are taken", async () => {
    const empty = join(work, "empty");
    mkdirSync(empty);
    const hidden = join(work, "hidden-only");
    mkdirSync(join(hidden, "lost+found"), { recursive: true }); // the root of a new volume
    writeFileSync(join(hidden, ".harness-port"), "8443");
    const data = join(work, "data");
    mkdirSync(join(data, "pki"), { recursive: true });
    writeFileSync(join(data, "factory.json"), '{"name":"main"}\n');
    writeFileSync(join(data, "gateway.db"), "");
    // A first start killed before it wrote factory.json: the gateway's own folders and lock, none of the marks.
    const halfMade = join(work, "half-made");
    for (const d of ["pki", "tuf/keys", "registry"]) mkdirSync(join(halfMade, d), { recursive: true });
    writeFileSync(join(halfMade, "serve.lock"), "1 2 3\n");
    for (const dir of [join(work, "absent"), empty, hidden, data, halfMade]) expect({ dir, ...(await said("serve", "--data", dir, "--tls-cert", "x.pem")) }).toEqual({ dir, ...taken });
    // A folder holding only the --db file it is given (and SQLite's files beside it) and its --registry-dir.
    const ownDb = join(work, "own-db");
    mkdirSync(join(ownDb, "blobs"), { recursive: true });
    for (const f of ["fleet.db", "fleet.db-wal", "fleet.db-shm"]) writeFileSync(join(ownDb, f), "");
    expect(await said("serve", "--data", ownDb, "--db", join(ownDb, "fleet.db"), "--registry-dir", join(ownDb, "blobs"), "--tls-cert", "x.pem")).toEqual(taken);
    // The same folder without them named is someone else's.
    expect((await said("serve", "--data", ownDb, "--tls-cert", "x.pem")).code).toBe(2);
  });
});

describe("serve's harmful-but-valid values", () => {
  // --rollout-tick is read last, after the timeouts and lifetimes: refused there, they were taken
  // (and a run that took a bad value still stops there instead of serving).
  const rolloutTick = { code: 2, err: 'gateway serve: --rollout-tick must be a positive number, got "0"' };

  test("a timeout under a second, which cuts off every client or every slow one, is refused naming the least it takes", async () => {
    const data = join(work, "never-made");
    for (const flag of ["head-timeout", "body-timeout", "idle-timeout"])
      for (const value of ["0.0001", "0.5"])
        expect({ flag, ...(await said("serve", "--data", data, `--${flag}`, value, "--rollout-tick", "0")) }).toEqual({
          flag,
          code: 2,
          err: `gateway serve: --${flag} must be at least 1 second, got "${value}": shorter cuts off devices on slow links before they can send a request; the defaults suit most fleets`,
        });
    // One second is taken: the start goes on to a flag read after it.
    expect(await said("serve", "--data", data, "--head-timeout", "1", "--body-timeout", "1", "--idle-timeout", "1", "--rollout-tick", "0")).toEqual(rolloutTick);
    expect(readdirSync(work)).not.toContain("never-made");
  });

  test("a TUF lifetime of 1 s, expired or due again the moment it is signed, is refused for every role; 2 s is taken", async () => {
    const data = join(work, "never-made");
    for (const role of ["root", "targets", "snapshot", "timestamp"]) {
      expect({ role, ...(await said("serve", "--data", data, "--tuf-expiry", `${role}=1s`, "--rollout-tick", "0")) }).toEqual({
        role,
        code: 2,
        err:
          `gateway serve: --tuf-expiry ${role}=1s is too short: give at least 2s (metadata expires on a whole second and is re-signed a quarter of its lifetime before, ` +
          "so a shorter lifetime is expired or due again as soon as it is signed)",
      });
      // A number alone is no lifetime at all: its unit is asked for (lib/cli durationFlag), as for every duration flag.
      expect({ role, ...(await said("serve", "--data", data, "--tuf-expiry", `${role}=1`, "--rollout-tick", "0")) }).toEqual({
        role,
        code: 2,
        err: `gateway serve: --tuf-expiry ${role}: Invalid duration "1": give its unit: 1s, 1m, 1h, 1d or 1w`,
      });
    }
    // (With a warning first: so short a timestamp is re-signed in less time than a signer takeover takes.)
    const twoSeconds = ["root", "targets", "snapshot", "timestamp"].flatMap((r) => ["--tuf-expiry", `${r}=2s`]);
    const { code, err } = await runCliCaptured(gateway, ["serve", "--data", data, ...twoSeconds, "--rollout-tick", "0"]);
    expect({ code, err }).toEqual({ code: 2, err: expect.stringContaining(`\n${rolloutTick.err}\n`) });
    expect(readdirSync(work)).not.toContain("never-made");
  });
});

describe("tokens create --tag", () => {
  // A token that is no token is refused before any connection: reaching that refusal means the flags were taken.
  const server = ["--server", "https://127.0.0.1:1", "--token", "T"];
  const taken = { code: 2, err: "gateway tokens create: Invalid token: expected <secret>.<sha256 hex of the CA certificate>" };
  const notRegistration = (role: string) => ({
    code: 2,
    err: `gateway tokens create: --tag, --hwid, --max-uses and --allow-device-tags are for registration tokens: leave them out of a ${role} token`,
  });

  test("a tag flag on a publish, admin or viewer token is bad usage, even one that names nothing (--tag , or an empty --hwid)", async () => {
    for (const role of ["publish", "admin", "viewer"])
      for (const flags of [["--tag", ","], ["--tag", " "], ["--hwid", ""], ["--tag", "main"]])
        expect({ role, flags, ...(await said("tokens", "create", ...server, "--role", role, ...flags)) }).toEqual({ role, flags, ...notRegistration(role) });
    // An empty --tag is refused for every role, as every empty flag is.
    expect(await said("tokens", "create", ...server, "--role", "publish", "--tag", "")).toEqual({ code: 2, err: "gateway tokens create: --tag is empty: give T, or leave the flag out" });
    expect(await said("tokens", "create", ...server, "--role", "publish")).toEqual(taken);
  });

  test("a registration --tag of commas or spaces only names no tag and is bad usage; a tag, or none, is taken", async () => {
    for (const value of [",", " , ", ",,"])
      expect({ value, ...(await said("tokens", "create", ...server, "--tag", value)) }).toEqual({
        value,
        code: 2,
        err: `gateway tokens create: --tag "${value}" names no tag: give one or more (letters, digits, . _ -; comma-separated), or leave the flag out`,
      });
    for (const flags of [["--tag", "main,beta"], ["--tag", "main", "--tag", ","], [], ["--hwid", ""]]) expect({ flags, ...(await said("tokens", "create", ...server, ...flags)) }).toEqual({ flags, ...taken });
  });
});

describe("keys ceremony files", () => {
  test("a root.json or key file that is not there, or is a directory, is bad usage (2); one there but unreadable is a failure (1), as restore says", async () => {
    const missing = join(work, "no-such.root.json");
    const folder = join(work, "a-folder");
    mkdirSync(folder, { recursive: true });
    // /proc/self/mem is there, and reading it from its start fails with EIO: an unreadable file even for root, whom chmod does not stop.
    const unreadable = "/proc/self/mem";
    for (const argv of [["keys", "sign-root", "FILE", "--key", "k.json"], ["keys", "push-root", "FILE"], ["keys", "init-root", "--current", "FILE", "--out", join(work, "2.root.json")]]) {
      const run = (file: string) => said(...argv.map((a) => (a === "FILE" ? file : a)));
      const command = `gateway ${argv[0]} ${argv[1]}`;
      expect(await run(missing)).toEqual({ code: 2, err: `${command}: Cannot use ${missing}: no such file` });
      expect(await run(folder)).toEqual({ code: 2, err: `${command}: Cannot use ${folder}: it is a directory` });
      expect(await run(unreadable)).toEqual({ code: 1, err: expect.stringMatching(new RegExp(`^${command}: Cannot read /proc/self/mem: .*EIO`)) });
    }
    // A key file named with --key (read after a --current that is a root.json): the same rule.
    const key = generateKey();
    const root = new Root({ version: 1, specVersion: "1.0.31", expires: expiresAt(new Date(), 86400), consistentSnapshot: true });
    for (const role of ["root", "targets", "snapshot", "timestamp"]) root.addKey(modelKey(key), role);
    const current = join(work, "current.json");
    writeFileSync(current, signMetadata(root, [key]));
    const init = (file: string) => said("keys", "init-root", "--current", current, "--key", `timestamp=${file}`, "--out", join(work, "2.root.json"));
    expect(await init(folder)).toEqual({ code: 2, err: `gateway keys init-root: Cannot use ${folder}: it is a directory` });
    expect(await init(unreadable)).toEqual({ code: 1, err: expect.stringMatching(/^gateway keys init-root: Cannot read \/proc\/self\/mem: .*EIO/) });
    expect(readdirSync(work).filter((f) => f.endsWith(".root.json"))).toEqual([]);
  });
});
