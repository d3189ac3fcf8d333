/**
 * `gateway backup` and `gateway restore` stopped part way, through the real CLI on a real data
 * dir, as a user stops them: Ctrl-C (SIGINT) or a cancelled job or systemd's stop (SIGTERM). Each
 * exits 130 or 143 and says what it left; nothing is left behind: no plaintext database snapshot in
 * the data dir (`.backup-*`), no partial file beside --out (`.NAME.PID-xxxx.tmp`), no decrypted data
 * dir beside --data (`.restore-*`, holding the CA key and the admin token), and the last good backup
 * at --out is byte for byte the one that was there. What a kill -9 leaves (no handler runs) is
 * removed by the next backup or restore, which can tell its writer is gone (its lock file's PID).
 * A restore stopped once it puts the restored dir in place (held there by GATEWAY_FAULT) finishes
 * that first: cut short between two renames, --data could be missing.
 *
 * The data dir's database is grown with 64 MiB of random bytes, so a backup or a restore takes long
 * enough to be stopped at the point watched for: the temp file beside --out being written, or the
 * restore's temp dir holding decrypted keys (the database is unpacked last).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { randomBytes } from "node:crypto";
import { cpSync, existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { startGateway } from "../harness/gateway.ts";
import { removeTempDir, tempDir, until } from "../harness/tmp.ts";

const REPO = resolve(import.meta.dir, "../..");
const PASS = "a long enough passphrase";
let work: string;
let good: Buffer; // work/gw.backup as the last good backup wrote it

/** `gateway ARGS` started in `work`, so relative paths are the user's. */
const spawnGw = (args: string[]) =>
  Bun.spawn([process.execPath, join(REPO, "gateway/main.ts"), ...args], {
    cwd: work,
    env: { ...process.env, GATEWAY_BACKUP_PASSPHRASE: PASS },
    stdout: "pipe",
    stderr: "pipe",
  });
async function finished(p: ReturnType<typeof spawnGw>) {
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

/** Temp files of the backup beside --out (lib/fs/atomic-write.ts's names). */
const outTemps = () => readdirSync(work).filter((f) => f.startsWith(".gw.backup.") && f.endsWith(".tmp"));
const scratches = () => readdirSync(join(work, "data")).filter((f) => f.startsWith(".backup-"));
/** Restores' temp dirs in `parent` (--data's parent). */
const restoreDirs = (parent = work) => (existsSync(parent) ? readdirSync(parent).filter((f) => f.startsWith(".restore-")) : []);
/** A restore's temp dir in `parent` once it holds decrypted keys (pki/ comes before the database, which is last). */
const unpacking = (parent = work) => restoreDirs(parent).some((d) => existsSync(join(parent, d, "pki")));

/** Every file under `dir` with its content. */
function contents(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true }))
    if (e.isFile()) out[join(e.parentPath, e.name).slice(dir.length + 1)] = readFileSync(join(e.parentPath, e.name), "base64");
  return out;
}

beforeAll(async () => {
  work = await tempDir("backup-interrupt-");
  const g = await startGateway({ dataDir: join(work, "gw", "data"), db: join(work, "gw", "data", "gateway.db") });
  await g.stop();
  cpSync(g.dataDir, join(work, "data"), { recursive: true });
  rmSync(dirname(g.dataDir), { recursive: true, force: true });
  rmSync(join(work, "data", "serve.lock"), { force: true });
  const db = new Database(join(work, "data", "gateway.db"));
  db.exec("CREATE TABLE ballast (b BLOB)");
  for (let i = 0; i < 64; i++) db.prepare("INSERT INTO ballast VALUES (?)").run(randomBytes(1 << 20));
  db.close();
  const b = await finished(spawnGw(["backup", "--data", "data", "--out", "gw.backup"]));
  expect([b.code, b.stderr]).toEqual([0, ""]);
  good = readFileSync(join(work, "gw.backup"));
}, 120_000);
afterAll(() => removeTempDir(work));

for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
  test(`a backup stopped by ${signal} while writing removes its database snapshot and its unfinished file, says so, and the last good backup stays`, async () => {
    const p = spawnGw(["backup", "--data", "data", "--out", "gw.backup"]);
    await until("the backup writing its temp file beside --out", () => outTemps().length > 0 && scratches().length > 0, (v) => v, 60_000, 2);
    p.kill(signal);
    const r = await finished(p);
    expect([r.code, r.stderr]).toEqual([code, `gateway backup: stopped by ${signal}; removed the unfinished backup and its database snapshot; gw.backup still holds the last good backup, unchanged\n`]);
    expect({ scratch: scratches(), temps: outTemps() }).toEqual({ scratch: [], temps: [] });
    expect(Buffer.compare(readFileSync(join(work, "gw.backup")), good)).toBe(0);
  });
}

test("a restore stopped by SIGINT while unpacking removes the decrypted files beside --data, says so, and creates no --data", async () => {
  const p = spawnGw(["restore", "gw.backup", "--data", "new/restored"]);
  await until("the restore unpacking keys beside --data", () => unpacking(join(work, "new")), (v) => v, 60_000, 2);
  p.kill("SIGINT");
  const r = await finished(p);
  expect([r.code, r.stderr]).toEqual([130, "gateway restore: stopped by SIGINT; removed the files unpacked so far: nothing was restored\n"]);
  expect(restoreDirs()).toEqual([]);
  expect(existsSync(join(work, "new"))).toBe(false); // the parent it made for --data goes too
});

test("a restore --force stopped by SIGTERM while unpacking removes the decrypted files and leaves the data dir it would replace as it was", async () => {
  cpSync(join(work, "data"), join(work, "old"), { recursive: true });
  const before = contents(join(work, "old"));
  const p = spawnGw(["restore", "gw.backup", "--data", "old", "--force"]);
  await until("the restore unpacking keys beside --data", unpacking, (v) => v, 60_000, 2);
  p.kill("SIGTERM");
  const r = await finished(p);
  expect([r.code, r.stderr]).toEqual([143, "gateway restore: stopped by SIGTERM; removed the files unpacked so far: nothing was restored, and old is as it was\n"]);
  expect(restoreDirs()).toEqual([]);
  expect(contents(join(work, "old"))).toEqual(before);
  expect(readdirSync(work).filter((f) => f.startsWith("old."))).toEqual([]); // nothing set aside as replaced
  rmSync(join(work, "old"), { recursive: true, force: true });
});

test("a restore stopped while the restored dir is being put in place finishes that first, then says so and exits 130", async () => {
  // GATEWAY_FAULT holds the restore at that point (gateway/backup/backup.ts pauseForTest) until its stdin closes.
  const p = Bun.spawn([process.execPath, join(REPO, "gateway/main.ts"), "restore", "gw.backup", "--data", "placed"], {
    cwd: work,
    env: { ...process.env, GATEWAY_BACKUP_PASSPHRASE: PASS, GATEWAY_FAULT: "restore-pause-in-place" },
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  let stderrSoFar = "";
  const errText = (async () => {
    for await (const chunk of p.stderr.pipeThrough(new TextDecoderStream())) stderrSoFar += chunk;
    return stderrSoFar;
  })();
  await until("the restore paused at putting the data dir in place", () => stderrSoFar.includes("GATEWAY_FAULT") || p.exitCode !== null, (v) => v, 60_000);
  p.kill("SIGINT");
  await until("the restore saying it stops once the data dir is in place", () => stderrSoFar.includes("stopping once it is") || p.exitCode !== null, (v) => v, 10_000);
  p.stdin.end();
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), errText, p.exited]);
  expect(code).toBe(130);
  expect(stderr.split("\n").filter((l) => !l.includes("GATEWAY_FAULT"))).toEqual([
    "gateway restore: SIGINT: the restored data dir is being put in place at placed; stopping once it is",
    "gateway restore: stopped by SIGINT; the restore was finished first: placed holds the restored data dir",
    "",
  ]);
  expect(stdout).toMatch(/^restored \d+ files of factory .* into placed\n$/);
  expect(restoreDirs()).toEqual([]);
  expect(readFileSync(join(work, "placed", "gateway.db")).length).toBeGreaterThan(64 << 20);
  rmSync(join(work, "placed"), { recursive: true, force: true });
});

test("what a kill -9 leaves (no handler runs) is removed by the next backup or restore: their writers are gone", async () => {
  // A backup killed while writing: its database snapshot in the data dir, its partial file beside --out.
  const b = spawnGw(["backup", "--data", "data", "--out", "gw.backup"]);
  await until("the backup writing its temp file beside --out", () => outTemps().length > 0 && scratches().length > 0, (v) => v, 60_000, 2);
  b.kill("SIGKILL");
  await b.exited;
  // A restore killed while unpacking: the decrypted data dir beside --data (here: beside the data dir too).
  const r = spawnGw(["restore", "gw.backup", "--data", "killed"]);
  await until("the restore unpacking keys beside --data", unpacking, (v) => v, 60_000, 2);
  r.kill("SIGKILL");
  await r.exited;
  expect({ scratch: scratches().length, temps: outTemps().length, restores: restoreDirs().length }).toEqual({ scratch: 1, temps: 1, restores: 1 });

  // The next backup (minutes later, not an hour) removes all three, and writes a good backup.
  const next = await finished(spawnGw(["backup", "--data", "data", "--out", "gw.backup"]));
  expect([next.code, next.stderr]).toEqual([0, ""]);
  expect({ scratch: scratches(), temps: outTemps(), restores: restoreDirs() }).toEqual({ scratch: [], temps: [], restores: [] });

  // A restore killed, then restored again: the next restore removes the first one's leftover.
  const again = spawnGw(["restore", "gw.backup", "--data", "killed"]);
  await until("the restore unpacking keys beside --data", unpacking, (v) => v, 60_000, 2);
  again.kill("SIGKILL");
  await again.exited;
  expect(restoreDirs().length).toBe(1);
  const ok = await finished(spawnGw(["restore", "gw.backup", "--data", "killed"]));
  expect([ok.code, ok.stderr]).toEqual([0, ""]);
  expect(restoreDirs()).toEqual([]);
  expect(readdirSync(join(work, "killed")).filter((f) => f.startsWith("."))).toEqual([]); // no lock file came along
});
