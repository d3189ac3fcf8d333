/**
 * What a mistaken `gateway backup` or `gateway restore` must not do, through the real CLI on real
 * files: `restore --force` aimed at a folder that is not a gateway data dir changes nothing; aimed
 * at a data dir it keeps the old one beside it and says where; a bad --out or --data is named as
 * the user typed it (not as a temp name) and leaves no temp files; a private key given as
 * --recipient is refused, and any other wrong --recipient or --identity is a wrong flag value
 * (exit 2, in words, nothing written). A file system too small for a backup or a restore is
 * refused before writing, with the sizes, and one that fills while unpacking names --data and
 * leaves nothing behind: the small file system is a tmpfs this file mounts and unmounts (root
 * only, as the harness's loop dockerd).
 *
 * Its gateways are on SQLite whatever OTA_TEST_DB says: what it checks is the files backup and
 * restore write and read, the SQLite database among them (grown to fill a disk, found in the
 * restored dir); a PostgreSQL data dir's backup holds no database, and its backup and restore
 * (the --db check, the pg_dump and pg_restore they name) are checked in test/gateway/postgres.test.ts
 * and, on OTA_TEST_DB=postgres, test/gateway/backup.test.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { randomBytes } from "node:crypto";
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import tar from "tar-stream";
import { seal } from "../../gateway/backup/seal.ts";
import { acquireLock } from "../../lib/fs/pid-lock.ts";
import { startGateway, type GatewayOptions } from "../harness/gateway.ts";
import { removeTempDir, run, tempDir } from "../harness/tmp.ts";

const REPO = resolve(import.meta.dir, "../..");
const PASS = "a long enough passphrase";
let work: string;
let data: string; // a stopped gateway's data dir
const backup = "gw.backup"; // in work

/** `gateway ARGS` run in `work`, so relative paths are the user's. */
async function gw(args: string[], env: Record<string, string> = {}) {
  const p = Bun.spawn([process.execPath, join(REPO, "gateway/main.ts"), ...args], {
    cwd: work,
    env: { ...process.env, GATEWAY_BACKUP_PASSPHRASE: PASS, ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

/** A gateway on SQLite (its data dir's gateway.db), also under OTA_TEST_DB=postgres: see above. */
async function startSqliteGateway(opts: GatewayOptions = {}) {
  const dataDir = join(await tempDir("gateway-"), "data");
  return startGateway({ ...opts, dataDir, db: join(dataDir, "gateway.db") });
}

/** Every file under `dir` with its content: what "nothing touched" is checked against. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true }))
    if (e.isFile()) out[join(e.parentPath, e.name).slice(dir.length + 1)] = readFileSync(join(e.parentPath, e.name), "base64");
  return out;
}
/** A copy of `data` named `name` in `work`, its database grown by `mib` MiB in a table of its own. */
function ballasted(name: string, mib: number): string {
  const dir = join(work, name);
  cpSync(data, dir, { recursive: true });
  const db = new Database(join(dir, "gateway.db"));
  db.exec("CREATE TABLE ballast (b BLOB)");
  for (let i = 0; i < mib; i++) db.prepare("INSERT INTO ballast VALUES (?)").run(randomBytes(1 << 20));
  db.close();
  return dir;
}
const leftovers = () => readdirSync(work, { recursive: true }).map(String).filter((f) => /(^|\/)\.(restore|backup)-|\.tmp$/.test(f));

beforeAll(async () => {
  work = await tempDir("restore-safety-");
  const g = await startSqliteGateway();
  await g.stop();
  data = join(work, "data");
  cpSync(g.dataDir, data, { recursive: true });
  // A stopped gateway's dir: a stop that ended in SIGKILL on a loaded machine leaves its serve.lock,
  // which a restore over a copy takes as stale and removes, so the copies would not compare.
  rmSync(join(data, "serve.lock"), { force: true });
  const b = await gw(["backup", "--data", "data", "--out", backup]);
  expect(b.stderr).toBe("");
  expect(b.code).toBe(0);
}, 120_000);
afterAll(() => removeTempDir(work));

test("restore --force refuses a folder that is not a gateway data dir, names it and what it holds, and touches nothing", async () => {
  const keys = join(work, "keys");
  mkdirSync(keys);
  for (const f of ["id_ed25519", "id_ed25519.pub", "deploy.pem", "notes.txt", "a.key", "b.key", "c.key"]) writeFileSync(join(keys, f), `unrelated ${f}\n`);
  const before = snapshot(keys);
  const r = await gw(["restore", backup, "--data", "keys", "--force"]);
  expect(r.code).toBe(2);
  expect(r.stdout).toBe("");
  expect(r.stderr.split("\n")[0]).toBe(
    "gateway restore: --force replaces only a gateway data dir or an empty folder, and keys is neither: it holds a.key, b.key, c.key, deploy.pem, id_ed25519 and 2 more " +
      "(none of factory.json, pki/ca.pem, pki/ca.key, admin-token). Nothing was changed: give --data a new folder",
  );
  expect(snapshot(keys)).toEqual(before);
  expect(readdirSync(work).filter((f) => f.startsWith("keys."))).toEqual([]);
  expect(leftovers()).toEqual([]);
});

test("restore --force over a gateway data dir keeps the old one beside it and says where; an empty folder is simply used", async () => {
  const target = join(work, "old-data");
  cpSync(data, target, { recursive: true });
  writeFileSync(join(target, "admin-token"), "the token of the data dir being replaced\n");
  writeFileSync(join(target, "only-in-the-old-dir"), "kept\n");
  const before = snapshot(target);
  const r = await gw(["restore", backup, "--data", "old-data/", "--force", "--format", "json"]);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  const replaced = (JSON.parse(r.stdout) as { replaced?: string }).replaced!;
  expect(replaced).toMatch(/^old-data\.replaced-\d{8}T\d{6}Z$/);
  expect(snapshot(join(work, replaced))).toEqual(before);
  expect(readFileSync(join(target, "admin-token"), "utf8")).toBe(readFileSync(join(data, "admin-token"), "utf8"));
  expect(existsSync(join(target, "only-in-the-old-dir"))).toBe(false);
  expect(existsSync(join(target, "serve.lock"))).toBe(false); // the lock restore held across the swap is gone

  // The text output names the kept dir too.
  const again = await gw(["restore", backup, "--data", "old-data", "--force"]);
  expect(again.code).toBe(0);
  expect(again.stdout).toMatch(/\nthe data dir that was there is kept in old-data\.replaced-\d{8}T\d{6}Z(-2)?: remove it once the restored gateway works\n$/);

  const empty = join(work, "empty");
  mkdirSync(empty);
  const e = await gw(["restore", backup, "--data", "empty", "--force", "--format", "json"]);
  expect(e.code).toBe(0);
  expect((JSON.parse(e.stdout) as { replaced?: string }).replaced).toBeUndefined();
  expect(readFileSync(join(empty, "admin-token"), "utf8")).toBe(readFileSync(join(data, "admin-token"), "utf8"));
  expect(leftovers()).toEqual([]);
});

test("restore --force of another gateway's backup warns that the replaced dir's devices cannot reach it, and how to put it back", async () => {
  const other = await startSqliteGateway({ args: ["--factory", "acme"] });
  await other.stop();
  cpSync(other.dataDir, join(work, "acme"), { recursive: true });
  expect((await gw(["backup", "--data", "acme", "--out", "acme.backup"])).code).toBe(0);
  const target = join(work, "main-data");
  cpSync(data, target, { recursive: true });
  const before = snapshot(target);

  const r = await gw(["restore", "acme.backup", "--data", "main-data", "--force"]);
  expect(r.code).toBe(0);
  const replaced = /kept in (main-data\.replaced-\S+):/.exec(r.stdout)![1]!;
  expect(r.stderr).toBe(
    "restore: warning: the data dir that was there (factory main) had another CA: the devices it registered cannot reach the restored gateway." +
      ` If this is the wrong backup, put that one back: rm -r main-data && mv ${replaced} main-data\n`,
  );
  // The way back it gives works.
  expect((await run(["sh", "-c", `rm -r main-data && mv ${replaced} main-data`], { cwd: work })).code).toBe(0);
  expect(snapshot(target)).toEqual(before);
  // The same gateway's backup over its own data dir: no warning.
  const same = await gw(["restore", backup, "--data", "main-data", "--force"]);
  expect([same.code, same.stderr]).toEqual([0, ""]);
});

test("a bad --out or --data is named as given, with its cause, in one line, and leaves no partial files", async () => {
  mkdirSync(join(work, "b"));
  writeFileSync(join(work, "afile"), "not a folder\n");
  // restore's wrong --data is bad usage (2), as every command's, and so is backup's --out in a folder
  // that is not there (a typo, as backup keygen's) or naming a folder; an --out under a file is not.
  const usage = "Run 'gateway restore --help' for usage.\n";
  const cases: [string[], number, string][] = [
    [["backup", "--data", "data", "--out", "b/nodir/x.bak"], 2, "gateway backup: Cannot write the backup to b/nodir/x.bak: the folder b/nodir does not exist\nRun 'gateway backup --help' for usage.\n"],
    [["backup", "--data", "data", "--out", "b"], 2, "gateway backup: Cannot write the backup to b: b is a folder, give a file name\nRun 'gateway backup --help' for usage.\n"],
    [["backup", "--data", "data", "--out", "afile/x.bak"], 1, "gateway backup: Cannot write the backup to afile/x.bak: afile is a file, not a folder\n"],
    [["restore", backup, "--data", "afile"], 2, `gateway restore: --data afile is a file, not a folder: give the folder to restore the data dir into\n${usage}`],
    [["restore", backup, "--data", "afile/data"], 2, `gateway restore: Cannot restore into --data afile/data: afile is a file, not a folder\n${usage}`],
  ];
  for (const [args, code, err] of cases) {
    const r = await gw(args);
    expect({ args, code: r.code, err: r.stderr }).toEqual({ args, code, err });
  }
  expect(readdirSync(join(work, "b"))).toEqual([]);
  expect(readFileSync(join(work, "afile"), "utf8")).toBe("not a folder\n");
  expect(leftovers()).toEqual([]);
});

test("a backup written inside the data dir is refused (lost with it, and held by the next backup), and nothing is written there", async () => {
  const before = snapshot(data);
  const r = await gw(["backup", "--data", "data", "--out", "data/tuf/nightly.backup"]);
  expect([r.code, r.stderr]).toEqual([
    2,
    "gateway backup: --out data/tuf/nightly.backup is inside the data dir data: a backup there is lost with it, and the next backup would hold it; write it to another folder, better another disk\nRun 'gateway backup --help' for usage.\n",
  ]);
  expect(snapshot(data)).toEqual(before);
  expect(readdirSync(data).filter((f) => f.startsWith(".backup-"))).toEqual([]);
});

test("the database is never in the clear in the backup's folder, not even while the backup is written", async () => {
  // A database large enough that the backup takes a while: 32 MiB in a table of its own.
  const fat = ballasted("fat", 32);
  const dest = join(work, "offsite");
  mkdirSync(dest);

  const p = Bun.spawn([process.execPath, join(REPO, "gateway/main.ts"), "backup", "--data", "fat", "--out", "offsite/fat.backup"], {
    cwd: work,
    env: { ...process.env, GATEWAY_BACKUP_PASSPHRASE: PASS },
    stdout: "ignore",
    stderr: "pipe",
  });
  const seen = new Set<string>();
  while (p.exitCode === null) {
    try {
      for (const f of readdirSync(dest, { recursive: true })) seen.add(String(f));
    } catch {
      // a temp file renamed while listed: look again
    }
    await Bun.sleep(1);
  }
  // stderr may hold progress lines (a backup that takes over a second on a busy machine).
  const stderr = await new Response(p.stderr).text();
  expect({ code: await p.exited, stderr }).toEqual({ code: 0, stderr: expect.not.stringContaining("gateway backup:") });
  expect([...seen].filter((f) => f.endsWith("gateway.db"))).toEqual([]);
  expect(readdirSync(dest)).toEqual(["fat.backup"]);
  expect(readdirSync(fat).filter((f) => f.startsWith(".backup-"))).toEqual([]); // nor left in the data dir
  // And the backup holds the database once, where it belongs.
  const r = await gw(["restore", "offsite/fat.backup", "--data", "fat-restored", "--format", "json"]);
  expect(r.code).toBe(0);
  expect(readdirSync(join(work, "fat-restored")).filter((f) => f.startsWith(".") || f.endsWith(".db"))).toEqual(["gateway.db"]);
});

test("a backup removes the database snapshots killed backups left in the data dir (over an hour ago) or the temp folder, and spares a running backup's", async () => {
  // What a killed backup leaves: a .backup-* folder holding the database in the clear, which the
  // replica step (a copy of the whole data dir) would carry to every replica.
  const hoursAgo = (h: number) => new Date(Date.now() - h * 3600_000);
  const scratch = (name: string, age: number) => {
    const dir = join(data, name);
    mkdirSync(dir);
    writeFileSync(join(dir, "gateway.db"), "a plaintext database\n");
    utimesSync(dir, hoursAgo(age), hoursAgo(age));
    return dir;
  };
  const killed = scratch(".backup-killed", 2);
  const fresh = scratch(".backup-fresh", 0); // a backup that has just begun
  const held = scratch(".backup-held", 2); // a backup running for over an hour: it holds its folder
  const lock = acquireLock(join(held, "backup.lock"));
  utimesSync(held, hoursAgo(2), hoursAgo(2));
  // The same in the temp folder, where the snapshot goes when the data dir has no room: one whose
  // backup was killed (its lock names a process that is gone), one running, one just begun.
  const tmp = await tempDir("backup-tmpdir-");
  const inTmp = (name: string, lockText?: string) => {
    const dir = join(tmp, name);
    mkdirSync(dir);
    writeFileSync(join(dir, "gateway.db"), "a plaintext database\n");
    if (lockText !== undefined) writeFileSync(join(dir, "backup.lock"), lockText);
    return dir;
  };
  inTmp("gateway-backup-killed", "999999999 1 0\n");
  const tmpHeld = acquireLock(join(inTmp("gateway-backup-held"), "backup.lock"));
  inTmp("gateway-backup-fresh");
  inTmp("other-tool-killed", "999999999 1 0\n"); // not a backup's: never touched
  try {
    const b = await gw(["backup", "--data", "data", "--out", "after-killed.backup"], { TMPDIR: tmp });
    expect([b.code, b.stderr]).toEqual([0, ""]);
    expect(readdirSync(data).filter((f) => f.startsWith(".backup-")).sort()).toEqual([".backup-fresh", ".backup-held"]);
    expect(existsSync(killed)).toBe(false);
    expect(readdirSync(tmp).sort()).toEqual(["gateway-backup-fresh", "gateway-backup-held", "other-tool-killed"]);
  } finally {
    lock.release();
    tmpHeld.release();
    rmSync(fresh, { recursive: true, force: true });
    rmSync(held, { recursive: true, force: true });
    rmSync(killed, { recursive: true, force: true });
  }
});

test("a data dir with no room for a second copy of the database is backed up with the snapshot in the temp folder", async () => {
  // 2 MiB of ballast in the database, on a tmpfs with about half of that free.
  const src = ballasted("crammed-src", 2);
  let used = 0;
  for (const e of readdirSync(src, { recursive: true, withFileTypes: true })) if (e.isFile()) used += Math.ceil(statSync(join(e.parentPath, e.name)).size / 4096) * 4096 + 4096;
  const mnt = join(work, "crammed");
  mkdirSync(mnt);
  expect((await run(["mount", "-t", "tmpfs", "-o", `size=${Math.ceil((used + (1 << 20)) / 4096) * 4}k`, "tmpfs", mnt])).code).toBe(0);
  try {
    cpSync(src, join(mnt, "data"), { recursive: true });
    const b = await gw(["backup", "--data", "crammed/data", "--out", "crammed.backup"]);
    expect([b.code, b.stderr]).toEqual([0, ""]);
    expect(readdirSync(join(mnt, "data")).filter((f) => f.startsWith(".backup-"))).toEqual([]);
    const r = await gw(["restore", "crammed.backup", "--data", "crammed-restored"]);
    expect(r.code).toBe(0);
    const back = new Database(join(work, "crammed-restored", "gateway.db"), { readonly: true });
    expect(back.query("SELECT count(*) AS n FROM ballast").get()).toEqual({ n: 2 });
    back.close();
  } finally {
    await run(["umount", mnt]);
  }
});

test("a passphrase file or --identity key other users can read is warned about (it opens every backup), and still used", async () => {
  writeFileSync(join(work, "shared-pass"), `${PASS}\n`, { mode: 0o644 });
  chmodSync(join(work, "shared-pass"), 0o644);
  const b = await gw(["backup", "--data", "data", "--out", "shared.backup", "--passphrase-file", "shared-pass"], { GATEWAY_BACKUP_PASSPHRASE: "" });
  expect(b.code).toBe(0);
  expect(b.stderr).toBe("backup: warning: the passphrase file shared-pass can be read by other users of this machine (mode 0644): chmod 600 shared-pass\n");
  const r = await gw(["restore", "shared.backup", "--data", "from-shared", "--passphrase-file", "shared-pass"], { GATEWAY_BACKUP_PASSPHRASE: "" });
  expect([r.code, r.stderr]).toEqual([0, "restore: warning: the passphrase file shared-pass can be read by other users of this machine (mode 0644): chmod 600 shared-pass\n"]);

  chmodSync(join(work, "shared-pass"), 0o600);
  const quiet = await gw(["backup", "--data", "data", "--out", "shared.backup", "--passphrase-file", "shared-pass"], { GATEWAY_BACKUP_PASSPHRASE: "" });
  expect([quiet.code, quiet.stderr]).toEqual([0, ""]);

  expect((await gw(["backup", "keygen", "--out", "shared-id"])).code).toBe(0);
  expect((await gw(["backup", "--data", "data", "--out", "for-id.backup", "--recipient", "shared-id.pub"], { GATEWAY_BACKUP_PASSPHRASE: "" })).code).toBe(0);
  chmodSync(join(work, "shared-id.key"), 0o640);
  const id = await gw(["restore", "for-id.backup", "--data", "from-shared-id", "--identity", "shared-id.key"], { GATEWAY_BACKUP_PASSPHRASE: "" });
  expect([id.code, id.stderr]).toEqual([0, "restore: warning: the identity key shared-id.key can be read by other users of this machine (mode 0640): chmod 600 shared-id.key\n"]);
});

test("--recipient refuses the private key of a backup key pair; the public key is what it takes", async () => {
  const k = await gw(["backup", "keygen", "--out", "backup-id"]);
  expect(k.code).toBe(0);
  const r = await gw(["backup", "--data", "data", "--out", "sealed.backup", "--recipient", "backup-id.key"], { GATEWAY_BACKUP_PASSPHRASE: "" });
  expect(r.code).toBe(2);
  expect(r.stderr.split("\n")[0]).toBe(
    "gateway backup: --recipient backup-id.key is a private key: give the public key (backup-id.pub, from gateway backup keygen) and keep the private key offline",
  );
  expect(existsSync(join(work, "sealed.backup"))).toBe(false);
  expect(leftovers()).toEqual([]);

  const ok = await gw(["backup", "--data", "data", "--out", "sealed.backup", "--recipient", "backup-id.pub"], { GATEWAY_BACKUP_PASSPHRASE: "" });
  expect(ok.stderr).toBe("");
  expect(ok.code).toBe(0);
  const back = await gw(["restore", "sealed.backup", "--data", "from-recipient", "--identity", "backup-id.key"], { GATEWAY_BACKUP_PASSPHRASE: "" });
  expect(back.code).toBe(0);
  expect(readFileSync(join(work, "from-recipient", "admin-token"), "utf8")).toBe(readFileSync(join(data, "admin-token"), "utf8"));
});

test("help and the no-secret messages name the key files backup keygen writes (PREFIX.pub, PREFIX.key), not other names", async () => {
  const keygen = await gw(["backup", "keygen", "--help"]);
  expect(keygen.stdout).toContain("Writes PREFIX.pub (public) and PREFIX.key (private");
  const backupHelp = (await gw(["backup", "--help"])).stdout;
  expect(backupHelp).toMatch(/--recipient PREFIX\.pub +Encrypt for this public key \(the PREFIX\.pub gateway backup keygen wrote\)/);
  const restoreHelp = (await gw(["restore", "--help"])).stdout;
  expect(restoreHelp).toMatch(/--identity PREFIX\.key +Private key for a backup made with --recipient \(the PREFIX\.key gateway backup keygen wrote\)/);
  const noSecret = { GATEWAY_BACKUP_PASSPHRASE: "" };
  const b = await gw(["backup", "--data", "data", "--out", "no-secret.backup"], noSecret);
  expect([b.code, b.stderr.split("\n")[0]]).toEqual([2, expect.stringContaining("or give --recipient PREFIX.pub (from gateway backup keygen)")]);
  const r = await gw(["restore", backup, "--data", "no-secret"], noSecret);
  expect([r.code, r.stderr.split("\n")[0]]).toEqual([2, expect.stringContaining("or give --identity PREFIX.key (from gateway backup keygen)")]);
  for (const text of [backupHelp, restoreHelp, b.stderr, r.stderr]) expect(text).not.toMatch(/PUBLIC\.pem|PRIVATE\.pem/);
});

test("backup --help says what the file holds on each backend: on PostgreSQL the TUF metadata is in the database, not in the file", async () => {
  const help = (await gw(["backup", "--help"])).stdout.replace(/\s+/g, " ");
  expect(help).toContain("Holds the data dir: the factory CA, the server certificate, the TUF signing keys, the admin token and the registry secret.");
  expect(help).toContain("On SQLite it also holds the database as a consistent snapshot: devices, tokens, groups, rollouts, events and the signed TUF metadata.");
  expect(help).toContain("On PostgreSQL (--db postgres://...) those are in the database, which is not in the file: back it up with pg_dump at the same time.");
  expect(help).not.toContain("TUF keys and metadata");
});

describe("a data dir with some bulk: the wrong key file, a full disk, --with-registry", () => {
  let small: string; // a 512 KiB tmpfs
  let mounted = false;
  beforeAll(async () => {
    // A data dir with some bulk, so its backup is larger than the small file system: 1 MiB in the registry folder.
    cpSync(data, join(work, "bulky"), { recursive: true });
    mkdirSync(join(work, "bulky", "registry", "blobs"), { recursive: true });
    writeFileSync(join(work, "bulky", "registry", "blobs", "bulk"), randomBytes(1 << 20));
    expect((await gw(["backup", "--data", "bulky", "--out", "bulky.backup", "--with-registry"])).code).toBe(0);
    expect((await gw(["backup", "keygen", "--out", "id"])).code).toBe(0);
    small = join(work, "small");
    mkdirSync(small);
    expect((await run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", small])).code).toBe(0);
    mounted = true;
  }, 120_000);
  afterAll(async () => {
    if (mounted) await run(["umount", small]);
  });

  test("--with-registry says how many registry files it took, and warns when there were none (a registry served from elsewhere)", async () => {
    const empty = await gw(["backup", "--data", "data", "--out", "noreg.backup", "--with-registry"]);
    expect(empty.code).toBe(0);
    expect(empty.stdout).toMatch(/, registry included \(0 files\)\n$/);
    expect(empty.stderr).toBe(
      "backup: --with-registry found no registry files in data/registry: if the gateway serves its registry from another folder (serve --registry-dir), give that folder with --registry-dir\n",
    );
    const full = await gw(["backup", "--data", "bulky", "--out", "reg.backup", "--with-registry"]);
    expect([full.code, full.stderr]).toEqual([0, ""]);
    expect(full.stdout).toMatch(/, registry included \(1 file\)\n$/);
  });

  test("a --recipient or --identity that is not the right key is bad usage, said in words, and writes nothing", async () => {
    writeFileSync(join(work, "notes.txt"), "not a key\n");
    const notKey = await gw(["backup", "--data", "bulky", "--out", "r.backup", "--recipient", "notes.txt"], { GATEWAY_BACKUP_PASSPHRASE: "" });
    expect([notKey.code, notKey.stderr.split("\n")[0]]).toEqual([
      2,
      "gateway backup: --recipient notes.txt: it is not a PEM public key (give the PREFIX.pub that gateway backup keygen wrote)",
    ]);
    expect(existsSync(join(work, "r.backup"))).toBe(false);

    const ed = await run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", join(work, "ed.key")]);
    expect(ed.code).toBe(0);
    await run(["openssl", "pkey", "-in", join(work, "ed.key"), "-pubout", "-out", join(work, "ed.pub")]);
    const edPub = await gw(["backup", "--data", "bulky", "--out", "r.backup", "--recipient", "ed.pub"], { GATEWAY_BACKUP_PASSPHRASE: "" });
    expect([edPub.code, edPub.stderr.split("\n")[0]]).toEqual([2, "gateway backup: --recipient ed.pub: it is an ed25519 public key, not the X25519 key gateway backup keygen makes"]);

    const sealed = await gw(["backup", "--data", "bulky", "--out", "r.backup", "--recipient", "id.pub"], { GATEWAY_BACKUP_PASSPHRASE: "" });
    expect(sealed.code).toBe(0);
    const pubAsIdentity = await gw(["restore", "r.backup", "--data", "restored", "--identity", "id.pub"], { GATEWAY_BACKUP_PASSPHRASE: "" });
    expect([pubAsIdentity.code, pubAsIdentity.stderr.split("\n")[0]]).toEqual([
      2,
      "gateway restore: --identity id.pub: it is a public key: give the private key (the PREFIX.key that gateway backup keygen wrote beside PREFIX.pub)",
    ]);
    const edAsIdentity = await gw(["restore", "r.backup", "--data", "restored", "--identity", "ed.key"], { GATEWAY_BACKUP_PASSPHRASE: "" });
    expect([edAsIdentity.code, edAsIdentity.stderr.split("\n")[0]]).toEqual([
      2,
      "gateway restore: --identity ed.key: it is an ed25519 private key, not the X25519 key gateway backup keygen makes",
    ]);
    expect(existsSync(join(work, "restored"))).toBe(false);
    expect(readdirSync(work).filter((f) => f.startsWith(".restore-") || f.startsWith(".backup-"))).toEqual([]);
  });

  test("a file system too small for the backup or the restore is refused before writing, with the sizes", async () => {
    const b = await gw(["backup", "--data", "bulky", "--out", "small/gw.backup", "--with-registry"]);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/^gateway backup: Cannot write the backup to small\/gw\.backup: it needs at least 1\.\d MiB, and the file system holding small has \d+\.\d KiB free\n$/);
    const r = await gw(["restore", "bulky.backup", "--data", "small/restored"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^gateway restore: Cannot restore into --data small\/restored: it needs at least 1\.\d MiB, and the file system holding small has \d+\.\d KiB free; nothing was restored\n$/);
    expect(readdirSync(small)).toEqual([]);
  });

  test("a disk that fills while unpacking names --data, and leaves nothing behind", async () => {
    // A backup whose manifest understates its size (as a disk another writer fills meanwhile would):
    // the room check passes and the disk runs out half way.
    const pack = tar.pack();
    const manifest = { format: 1, createdAt: new Date().toISOString(), factory: "main", database: "sqlite", registry: false, files: 1, bytes: 0 };
    pack.entry({ name: "backup.json", mode: 0o600 }, JSON.stringify(manifest));
    pack.entry({ name: "factory.json", mode: 0o644 }, randomBytes(1 << 20));
    pack.finalize();
    const chunks: Uint8Array[] = [];
    for await (const c of seal(pack as AsyncIterable<Uint8Array>, { passphrase: PASS })) chunks.push(c);
    writeFileSync(join(work, "understated.backup"), Buffer.concat(chunks));

    const r = await gw(["restore", "understated.backup", "--data", "small/restored"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("gateway restore: Cannot restore into --data small/restored: no space left on the device; nothing was restored\n");
    expect(readdirSync(small)).toEqual([]);
  });
});
