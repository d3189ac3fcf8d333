/**
 * The `gateway keys` commands given the wrong file where a root.json belongs, through the real
 * CLI: a key file (the easy slip, both sit in the ceremony folder) is called a key file, and a
 * file that is not JSON at all, a passphrase for one, is refused without quoting any of it (the
 * JSON parser's message quotes the first word). Either is a wrong argument: bad usage, exit 2, as is
 * a root.json that is not there. `keys generate --out bob.pub.json` (or bob.pub) makes
 * the pair bob.json/bob.pub.json, never a private key in a file named .pub.json.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { Root } from "@tufjs/models";
import { keyPairPrefix } from "../../gateway/commands/_key-out.ts";
import { UsageError } from "../../lib/cli/command.ts";
import { runCliCaptured } from "../harness/cli.ts";
import { commands } from "../../gateway/commands/index.ts";
import { exitCodeFor } from "../../gateway/exit-codes.ts";
import { generateKey, modelKey, serializeKey } from "../../lib/tuf/keys.ts";
import { expiresAt, signMetadata } from "../../lib/tuf/metadata.ts";
import { removeTempDir, run, tempDir } from "../harness/tmp.ts";

const MAIN = resolve(import.meta.dir, "../../gateway/main.ts");
let work: string;
const cli = (...args: string[]) => run([process.execPath, MAIN, ...args], { cwd: work, allowFail: true });

beforeAll(async () => {
  work = await tempDir("keys-ceremony-files-");
  expect((await cli("keys", "generate", "--out", "alice")).code).toBe(0);
  writeFileSync(join(work, "passphrase"), "hunter2secret and more\n", { mode: 0o600 });
});
afterAll(() => removeTempDir(work));

test("a key file where a root.json belongs is called a key file, and nothing is written", async () => {
  const before = readFileSync(join(work, "alice.json"), "utf8");
  const sign = await cli("keys", "sign-root", "alice.json", "--key", "alice.json");
  expect([sign.code, sign.stderr]).toEqual([2, "gateway keys sign-root: Cannot use alice.json: it is a key file, not a root.json\n"]);
  expect(readFileSync(join(work, "alice.json"), "utf8")).toBe(before);
  const init = await cli("keys", "init-root", "--current", "alice.pub.json", "--out", "2.root.json");
  expect([init.code, init.stderr]).toEqual([2, "gateway keys init-root: Cannot use alice.pub.json: it is a key file, not a root.json\n"]);
});

test("a file that is not JSON is refused without quoting it", async () => {
  const push = await cli("keys", "push-root", "--server", "https://127.0.0.1:9", "--token", "x", "passphrase");
  expect([push.code, push.stderr]).toEqual([2, "gateway keys push-root: Cannot use passphrase: not JSON, so not a root.json\n"]);
  const sign = await cli("keys", "sign-root", "passphrase", "--key", "alice.json");
  expect(sign.stderr).not.toContain("hunter2");
  expect([sign.code, sign.stderr]).toEqual([2, "gateway keys sign-root: Cannot use passphrase: not JSON, so not a root.json\n"]);
});

test("a root.json that is not there is bad usage (exit 2) naming it, and nothing is written", async () => {
  const init = await cli("keys", "init-root", "--current", "no-such.root.json", "--out", "typo/2.root.json");
  expect([init.code, init.stderr]).toEqual([2, "gateway keys init-root: Cannot use no-such.root.json: no such file\n"]);
  const push = await cli("keys", "push-root", "--server", "https://127.0.0.1:9", "--token", "x", "no-such.root.json");
  expect([push.code, push.stderr]).toEqual([2, "gateway keys push-root: Cannot use no-such.root.json: no such file\n"]);
  const sign = await cli("keys", "sign-root", "no-such.root.json", "--key", "alice.json");
  expect([sign.code, sign.stderr]).toEqual([2, "gateway keys sign-root: Cannot use no-such.root.json: no such file\n"]);
  expect(readdirSync(work).filter((f) => f.includes("no-such") || f === "typo")).toEqual([]);
});

test("keys generate --out NAME.pub.json writes the private key to NAME.json, and NAME.pub.json holds no private key", async () => {
  const r = await cli("keys", "generate", "--out", "bob.pub.json");
  expect(r.code).toBe(0);
  expect(readdirSync(work).filter((f) => f.startsWith("bob")).sort()).toEqual(["bob.json", "bob.pub.json"]);
  expect(JSON.parse(readFileSync(join(work, "bob.pub.json"), "utf8"))).not.toHaveProperty("private");
  expect(JSON.parse(readFileSync(join(work, "bob.json"), "utf8"))).toHaveProperty("private");
  expect(statSync(join(work, "bob.json")).mode & 0o777).toBe(0o600);
});

test("an --out PREFIX that names a folder is refused (DIR/ made the hidden files DIR/.json and DIR/.pub.json)", async () => {
  mkdirSync(join(work, "keys"));
  for (const [out, shown] of [[`${work}/keys/`, `${work}/keys/`], [`${work}/keys`, `${work}/keys`], [`${work}/keys/.pub.json`, `${work}/keys/`]] as const)
    await expect(keyPairPrefix(out, [".pub.json", ".json", ".pub"], ".json")).rejects.toThrow(new UsageError(`--out ${out} names a folder: PREFIX names the key files, e.g. ${join(shown, "NAME")}`));
  expect(await keyPairPrefix(`${work}/keys/dave`, [".pub.json", ".json", ".pub"], ".json")).toBe(`${work}/keys/dave`);
  // A file name beside a folder of the same prefix names the pair plainly (keys.json, keys.pub.json).
  expect(await keyPairPrefix(`${work}/keys.json`, [".pub.json", ".json", ".pub"], ".json")).toBe(`${work}/keys`);
  expect(readdirSync(join(work, "keys"))).toEqual([]);
});

test("sign-root refuses a --previous that is not the draft's previous version (the draft itself was counted as its own previous root)", async () => {
  const key = generateKey();
  const root = new Root({ version: 1, specVersion: "1.0.31", expires: expiresAt(new Date(), 86400), consistentSnapshot: true });
  for (const role of ["root", "targets", "snapshot", "timestamp"]) root.addKey(modelKey(key), role);
  mkdirSync(join(work, "prev"));
  writeFileSync(join(work, "prev", "current.json"), signMetadata(root, [key]));
  writeFileSync(join(work, "prev", "root-key.json"), serializeKey(key), { mode: 0o600 });
  const cli = { name: "gateway", version: "0", summary: "", commands, exitCodeFor };
  const draft = join(work, "prev", "2.root.json");
  expect((await runCliCaptured(cli, ["keys", "init-root", "--current", join(work, "prev", "current.json"), "--out", draft, "--format", "json"])).code).toBe(0);
  const before = readFileSync(draft, "utf8");
  const { code, err } = await runCliCaptured(cli, ["keys", "sign-root", draft, "--key", join(work, "prev", "root-key.json"), "--previous", draft]);
  expect(code).toBe(2);
  expect(err).toStartWith(`gateway keys sign-root: --previous ${draft} is root.json v2: the draft is v2, so the previous root is v1\n`);
  expect(readFileSync(draft, "utf8")).toBe(before);
});

test("keys generate --out NAME.pub writes the pair NAME.json/NAME.pub.json, the private key in NAME.json", async () => {
  const r = await cli("keys", "generate", "--out", "carol.pub");
  expect(r.code).toBe(0);
  expect(r.stdout).toContain("wrote carol.json (private: keep it where it signs) and carol.pub.json (public: give it to the root drafter)");
  expect(readdirSync(work).filter((f) => f.startsWith("carol")).sort()).toEqual(["carol.json", "carol.pub.json"]);
  expect(JSON.parse(readFileSync(join(work, "carol.pub.json"), "utf8"))).not.toHaveProperty("private");
  expect(JSON.parse(readFileSync(join(work, "carol.json"), "utf8"))).toHaveProperty("private");
  expect(statSync(join(work, "carol.json")).mode & 0o777).toBe(0o600);
});

test("a passphrase or a public key given to sign-root as --key is said as such, without quoting the file", async () => {
  // A draft 2.root.json to sign, from a root 1 of its own.
  const key = generateKey();
  const root = new Root({ version: 1, specVersion: "1.0.31", expires: expiresAt(new Date(), 86400), consistentSnapshot: true });
  for (const role of ["root", "targets", "snapshot", "timestamp"]) root.addKey(modelKey(key), role);
  writeFileSync(join(work, "1.root.json"), signMetadata(root, [key]));
  const draft = await cli("keys", "init-root", "--current", "1.root.json", "--key", "root=alice.pub.json", "--out", "2.root.json");
  expect([draft.code, draft.stderr]).toEqual([0, ""]);

  const pass = await cli("keys", "sign-root", "2.root.json", "--key", "passphrase");
  expect(pass.code).toBe(2);
  expect(pass.stderr).not.toContain("hunter2");
  expect(pass.stderr).toBe("gateway keys sign-root: Cannot load TUF key \"passphrase\": not JSON, so not a key file\nRun 'gateway keys sign-root --help' for usage.\n");
  const pub = await cli("keys", "sign-root", "2.root.json", "--key", "alice.pub.json");
  expect(pub.code).toBe(2);
  expect(pub.stderr).toBe("gateway keys sign-root: Cannot load TUF key \"alice.pub.json\": it holds only a public key: give the private key file of the same key\nRun 'gateway keys sign-root --help' for usage.\n");
  // A private key that is not one of the root keys: bad usage too, and the draft is left as it was.
  const before = readFileSync(join(work, "2.root.json"), "utf8");
  expect((await cli("keys", "generate", "--out", "dave")).code).toBe(0);
  const other = await cli("keys", "sign-root", "2.root.json", "--key", "dave.json");
  expect([other.code, other.stderr]).toEqual([2, expect.stringMatching(/^gateway keys sign-root: --key: Cannot sign root\.json v2 with key [0-9a-f]{64}: it is not a root key of that version or of the previous one\n/)]);
  expect(readFileSync(join(work, "2.root.json"), "utf8")).toBe(before);
});

/** A signed root.json of `version` (one key for every role), with `sigs` extra signers, as a file's text. */
function rootFile(version: number, key = generateKey(), extra: ReturnType<typeof generateKey>[] = []): string {
  const root = new Root({ version, specVersion: "1.0.31", expires: expiresAt(new Date(), 365 * 86400), consistentSnapshot: true });
  for (const role of ["root", "targets", "snapshot", "timestamp"]) root.addKey(modelKey(key), role);
  return new TextDecoder().decode(signMetadata(root, [key, ...extra]));
}

test("init-root --out named for another version than current+1 is refused with the right name, and nothing is written", async () => {
  // Root already at v2 (one `keys rotate`), docs followed literally: the draft named 2.root.json was
  // also where the current root was saved, so the current root was saved nowhere and sign-root failed.
  const dir = join(work, "rotated");
  mkdirSync(dir);
  writeFileSync(join(work, "current-v2.json"), rootFile(2));
  const r = await cli("keys", "init-root", "--current", "current-v2.json", "--out", "rotated/2.root.json", "--key", "root=alice.pub.json");
  expect([r.code, r.stderr]).toEqual([2, "gateway keys init-root: Cannot use rotated/2.root.json: the current root is v2, so the draft is v3: name it rotated/3.root.json\n"]);
  const older = await cli("keys", "init-root", "--current", "current-v2.json", "--out", "rotated/7.root.json", "--key", "root=alice.pub.json");
  expect(older.stderr).toEndWith("name it rotated/3.root.json\n");
  expect(readdirSync(dir)).toEqual([]);
  // The right name: the draft and the current root beside it.
  const ok = await cli("keys", "init-root", "--current", "current-v2.json", "--out", "rotated/3.root.json", "--key", "root=alice.pub.json");
  expect([ok.code, ok.stderr]).toEqual([0, ""]);
  expect(ok.stdout).toContain("current root saved as rotated/2.root.json");
  expect(readdirSync(dir).sort()).toEqual(["2.root.json", "3.root.json"]);
  expect(readFileSync(join(dir, "2.root.json"), "utf8")).toBe(readFileSync(join(work, "current-v2.json"), "utf8"));
});

test("init-root leaves the previous root file beside --out alone when it holds the current root, and refuses (writing nothing) when it holds anything else", async () => {
  const dir = join(work, "drafts");
  mkdirSync(dir);
  const key = generateKey();
  const current = rootFile(6, key);
  writeFileSync(join(work, "current-v6.json"), current);
  // A v6 draft signed by two holders but never pushed sits where the current root v6 would be saved.
  const signedDraft = rootFile(6, generateKey(), [generateKey()]);
  writeFileSync(join(dir, "6.root.json"), signedDraft);
  const r = await cli("keys", "init-root", "--current", "current-v6.json", "--out", "drafts/7.root.json", "--key", "root=alice.pub.json");
  expect([r.code, r.stderr]).toEqual([
    2,
    "gateway keys init-root: Cannot use drafts/6.root.json: it holds another root.json v6 (2 signatures: a draft never pushed?), and the current root v6 belongs there for sign-root: " +
      "move it elsewhere (keep it if it is a draft whose signatures are still wanted) and run again; nothing was written\n",
  ]);
  expect(readFileSync(join(dir, "6.root.json"), "utf8")).toBe(signedDraft);
  expect(readdirSync(dir)).toEqual(["6.root.json"]);
  // Not a root.json at all: refused the same way.
  writeFileSync(join(dir, "6.root.json"), "notes\n");
  const notes = await cli("keys", "init-root", "--current", "current-v6.json", "--out", "drafts/7.root.json", "--key", "root=alice.pub.json");
  expect(notes.code).toBe(2);
  expect(notes.stderr).toStartWith("gateway keys init-root: Cannot use drafts/6.root.json: it is not a root.json, and the current root v6 belongs there");
  expect(readdirSync(dir)).toEqual(["6.root.json"]);
  // The current root itself (as the last ceremony's pushed draft, reformatted): kept as it is, the draft written.
  const same = JSON.stringify(JSON.parse(current), null, 2);
  writeFileSync(join(dir, "6.root.json"), same);
  const ok = await cli("keys", "init-root", "--current", "current-v6.json", "--out", "drafts/7.root.json", "--key", "root=alice.pub.json");
  expect([ok.code, ok.stderr]).toEqual([0, ""]);
  expect(ok.stdout).toContain("current root already in drafts/6.root.json");
  expect(readFileSync(join(dir, "6.root.json"), "utf8")).toBe(same);
  expect(readdirSync(dir).sort()).toEqual(["6.root.json", "7.root.json"]);
});
