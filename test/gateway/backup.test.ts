/**
 * Backup and restore through the real CLI and a real gateway: a backup taken while a device posts
 * events, the data dir destroyed, the backup restored into a fresh dir and served on a fresh
 * port: the registered device (same certificate, same trusted TUF root, no new registration)
 * posts events, and verifies and sees a target published after the restore. An interrupted
 * backup never replaces the last good one. With OTA_TEST_DB=postgres each backup is taken as a
 * PostgreSQL operator takes it (its --db, and a pg_dump beside it) and restored as after losing the
 * database too (pg_restore into a new one): test/harness/gateway.ts backupOfDatabase, restoreOfDatabase.
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { RegistrationResponse } from "../../lib/api/index.ts";
import { EMPTY_SHA256 } from "../../lib/api/target.ts";
import { verifyAndLoadTargets } from "../../lib/tuf/index.ts";
import { backupOfDatabase, restoreOfDatabase, startGateway, testDbKind, withoutDatabaseNote, type GatewayHandle } from "../harness/gateway.ts";
import { removeTempDir, tempDir, until } from "../harness/tmp.ts";
import { post, tlsFetch } from "./_client.ts";
import { createBackup } from "../../gateway/backup/backup.ts";
import { registerDevice } from "./_register.ts";
import { makeDeviceCsr } from "./_device.ts";
import { anEvent } from "./_fixture.ts";

const REPO = resolve(import.meta.dir, "../..");
const started: GatewayHandle[] = [];
const work = await tempDir("backup-");
afterAll(async () => {
  for (const g of started) await g.stop();
  removeTempDir(work);
}, 120_000);

const PASS = "a long enough passphrase";
const gatewayCli = (args: string[], env: Record<string, string> = { GATEWAY_BACKUP_PASSPHRASE: PASS }) =>
  Bun.spawn([process.execPath, join(REPO, "gateway/main.ts"), ...args], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
async function run(args: string[], env?: Record<string, string>) {
  const p = gatewayCli(args, env);
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { stdout, stderr, code };
}

const appUri = (host: string) => `${host}/main/web@sha256:${"ab".repeat(32)}`;
const target = (host: string, version: string) => ({
  length: 0,
  hashes: { sha256: EMPTY_SHA256 },
  custom: { version, hardwareIds: ["amd64-linux"], tags: ["main"], docker_compose_apps: { web: { uri: appUri(host) } } },
});

test("a backup taken under load restores onto a fresh dir and port, and the device carries on without registering again", async () => {
  const gw = await startGateway();
  started.push(gw);
  const ca = gw.caPem;

  // A device registers with a registration token and keeps its trusted root, as fioup does.
  const tokenRes = await gw.adminFetch("/admin/tokens", post({ tags: ["main"], hwid: "amd64-linux" }));
  expect(tokenRes.status).toBeLessThan(300);
  const { token } = (await tokenRes.json()) as { token: string };
  const k = await makeDeviceCsr();
  const reg = await tlsFetch({ ca })(`${gw.url}/devices`, {
    ...post({ name: "d1", uuid: k.uuid, csr: k.csrPem, "hardware-id": "amd64-linux" }),
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
  });
  expect(reg.status).toBe(201);
  const cert = ((await reg.json()) as RegistrationResponse).certificate;
  const device = tlsFetch({ ca, cert, key: k.keyPem });
  const tufDir = join(work, "device-tuf");
  mkdirSync(tufDir, { recursive: true });
  writeFileSync(join(tufDir, "root.json"), await (await device(`${gw.url}/repo/1.root.json`)).text());
  expect((await gw.adminFetch("/admin/targets", post({ targets: { "amd64-linux-1": target(gw.host, "1") } }))).status).toBeLessThan(300);

  // Events keep arriving while the backup runs.
  const acked: string[] = [];
  let stop = false;
  const poster = (async () => {
    for (let i = 0; !stop; i++) {
      const res = await device(`${gw.url}/events`, post([anEvent(`before-${i}`)]));
      if (res.status === 200) acked.push(`before-${i}`);
    }
  })();
  await until("20 events acknowledged before the backup", () => acked.length, (n) => n >= 20, 30_000);
  const file = join(work, "gw.backup");
  const b = await run(["backup", "--data", gw.dataDir, "--out", file, "--format", "json", ...(await backupOfDatabase(gw.dataDir, file))]);
  stop = true;
  await poster;
  expect(withoutDatabaseNote(b.stderr)).toBe("");
  expect(b.code).toBe(0);
  const manifest = JSON.parse(b.stdout) as { files: number; database: string };
  expect(manifest.database).toBe(testDbKind());
  // Sealed: neither the CA key nor the admin token is readable in the file.
  const sealed = readFileSync(file);
  expect(sealed.includes(Buffer.from("PRIVATE KEY"))).toBe(false);
  expect(sealed.includes(Buffer.from(gw.adminToken))).toBe(false);

  // The data dir is lost.
  await gw.kill();
  rmSync(gw.dataDir, { recursive: true, force: true });

  // A wrong passphrase restores nothing.
  const restored = join(work, "restored");
  const bad = await run(["restore", file, "--data", restored], { GATEWAY_BACKUP_PASSPHRASE: "not the passphrase" });
  expect(bad.code).not.toBe(0);
  expect(bad.stderr).toContain("wrong passphrase or key");
  expect(existsSync(restored)).toBe(false);

  const r = await run(["restore", file, "--data", restored]);
  expect(withoutDatabaseNote(r.stderr)).toBe("");
  expect(r.code).toBe(0);
  // Which root's handed-over keys were taken comes back too: a key taken offline stays offline.
  expect(readFileSync(join(restored, "tuf", "keys", ".adopted-root"), "utf8")).toMatch(/^[1-9][0-9]*\n$/);
  const gw2 = await startGateway({ dataDir: restored, port: undefined, args: await restoreOfDatabase(file, restored) });
  started.push(gw2);
  expect(gw2.port).not.toBe(gw.port);
  expect(gw2.caPem).toBe(ca);
  expect(gw2.adminToken).toBe(gw.adminToken);

  // Every event acknowledged before the snapshot is there (the snapshot is a moment during the posting).
  const device2 = tlsFetch({ ca, cert, key: k.keyPem });
  const after = await device2(`${gw2.url}/events`, post([anEvent("after-restore")]));
  expect(after.status).toBe(200);
  const hist = await gw2.adminFetch(`/admin/devices/${k.uuid}/updates`);
  expect(hist.status).toBe(200);
  const ids = new Set(((await hist.json()) as { updates: { events: { id: string }[] }[] }).updates.flatMap((u) => u.events.map((e) => e.id)));
  expect(ids.has("after-restore")).toBe(true);
  expect(acked.slice(0, 20).every((id) => ids.has(id))).toBe(true);

  // A target published after the restore verifies against the root the device already trusted.
  expect((await gw2.adminFetch("/admin/targets", post({ targets: { "amd64-linux-2": target(gw2.host, "2") } }))).status).toBeLessThan(300);
  const verified = await verifyAndLoadTargets({
    metadataDir: tufDir,
    metadataBaseUrl: `${gw2.url}/repo/`,
    fetch: { tls: { ca, cert, key: k.keyPem } },
  });
  expect(Object.keys(verified.targets).sort()).toEqual(["amd64-linux-1", "amd64-linux-2"]);
});

test("a key rotation on the serving gateway while a backup packs its files: the backup holds the keys its database trusts, and its restore signs what devices verify", async () => {
  const gw = await startGateway();
  started.push(gw);
  const tufDir = join(work, "rotation-device-tuf");
  mkdirSync(tufDir, { recursive: true });
  const device = await registerDevice(gw.url, gw.adminToken, gw.caPem);
  writeFileSync(join(tufDir, "root.json"), await (await device.fetch(`${gw.url}/repo/1.root.json`)).text());
  const file = join(work, "rotated.backup");
  const dbArgs = await backupOfDatabase(gw.dataDir, file);
  let rotated: { code: number; stderr: string } | undefined;
  await createBackup({
    dataDir: gw.dataDir,
    out: file,
    secret: { passphrase: PASS },
    ...(dbArgs.length ? { db: dbArgs[1] } : {}),
    // The operator rotates the timestamp key after the database snapshot, while the files are packed (the keys come last: tuf/).
    onProgress: () => {
      if (rotated) return;
      const r = Bun.spawnSync([process.execPath, join(REPO, "gateway/main.ts"), "keys", "rotate", "timestamp", "--data", gw.dataDir], { stdout: "pipe", stderr: "pipe" });
      rotated = { code: r.exitCode, stderr: r.stderr.toString() };
    },
  });
  expect(rotated?.code, rotated?.stderr).toBe(0);
  await gw.kill();

  const restored = join(work, "rotation-restored");
  const r = await run(["restore", file, "--data", restored]);
  expect(r.code, r.stderr).toBe(0);
  const gw2 = await startGateway({ dataDir: restored, port: undefined, args: await restoreOfDatabase(file, restored) });
  started.push(gw2);
  expect((await gw2.adminFetch("/admin/targets", post({ targets: { "amd64-linux-1": target(gw2.host, "1") } }))).status).toBeLessThan(300);
  const verified = await verifyAndLoadTargets({ metadataDir: tufDir, metadataBaseUrl: `${gw2.url}/repo/`, fetch: { tls: { ca: gw2.caPem, cert: device.cert, key: device.key } } });
  expect(Object.keys(verified.targets)).toEqual(["amd64-linux-1"]);
}, 120_000);

test("registry files removed while a backup with the registry runs (registry gc): the backup is taken again, whole, not failed with a stack trace", async () => {
  const gw = await startGateway();
  started.push(gw);
  // Two blobs as gc would find them unreferenced: one streamed (over 1 MiB), one read whole.
  const blobs = join(gw.dataDir, "registry", "blobs", "sha256", "ab");
  mkdirSync(blobs, { recursive: true });
  const gone = [join(blobs, `${"ab".repeat(32)}`), join(blobs, `${"ac".repeat(32)}`)];
  writeFileSync(gone[0]!, new Uint8Array(3 << 20));
  writeFileSync(gone[1]!, "small");
  const file = join(work, "gc.backup");
  const dbArgs = await backupOfDatabase(gw.dataDir, file);
  for (const removed of gone) {
    let tries = 0;
    const m = await createBackup({
      dataDir: gw.dataDir,
      out: file,
      secret: { passphrase: PASS },
      withRegistry: true,
      ...(dbArgs.length ? { db: dbArgs[1] } : {}),
      onProgress: (files) => {
        if (files === 1) tries++;
        rmSync(removed, { force: true }); // gc, after the walk listed it
      },
    });
    expect(tries).toBe(2);
    const restored = join(work, `gc-restored-${tries}-${gone.indexOf(removed)}`);
    const r = await run(["restore", file, "--data", restored]);
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(join(restored, "registry", "blobs", "sha256", "ab", removed.split("/").pop()!))).toBe(false);
    expect(m.registryFiles).toBe(gone.indexOf(removed) === 0 ? 1 : 0);
  }
}, 120_000);

test("an interrupted backup leaves the last good one in place; restore refuses a non-empty dir", async () => {
  const gw = await startGateway();
  started.push(gw);
  const file = join(work, "keep.backup");
  const db = await backupOfDatabase(gw.dataDir, file);
  expect((await run(["backup", "--data", gw.dataDir, "--out", file, ...db])).code).toBe(0);
  const good = readFileSync(file);

  // Killed while writing (a registry blob large enough to take a moment), the old file stays whole.
  writeFileSync(join(gw.dataDir, "registry", "big.bin"), crypto.getRandomValues(new Uint8Array(64 << 10)).join(",").repeat(60));
  const p = gatewayCli(["backup", "--data", gw.dataDir, "--out", file, "--with-registry", ...db]);
  const writing = () => readdirSync(work).some((f) => f.startsWith(".keep.backup.") && f.endsWith(".tmp"));
  await until("the backup writing its temp file (or exiting)", () => writing() || p.exitCode !== null, (v) => v, 30_000, 2);
  p.kill("SIGKILL");
  expect(await p.exited).not.toBe(0); // killed mid-write, not finished
  await p.exited;
  expect(Buffer.compare(readFileSync(file), good)).toBe(0);
  const check = await run(["restore", file, "--data", join(work, "check")]);
  expect(withoutDatabaseNote(check.stderr)).toBe("");
  expect(check.code).toBe(0);

  // No secret given: a clear usage error, and nothing written.
  const none = await run(["backup", "--data", gw.dataDir, "--out", join(work, "plain.backup"), ...db], { GATEWAY_BACKUP_PASSPHRASE: "" });
  expect(none.code).toBe(2);
  expect(existsSync(join(work, "plain.backup"))).toBe(false);
  // A folder given for --out is bad usage too, said before anything is written.
  const folder = await run(["backup", "--data", gw.dataDir, "--out", work, ...db]);
  expect({ code: folder.code, err: folder.stderr }).toEqual({ code: 2, err: expect.stringContaining(`Cannot write the backup to ${work}: ${work} is a folder, give a file name\n`) });

  // A PostgreSQL --db is checked to be the data dir's database before anything is written: here
  // none answers (test/gateway/postgres.test.ts has the rest, and what a restore of one says).
  const pg = await run(["backup", "--data", gw.dataDir, "--out", join(work, "pg.backup"), "--db", "postgres://ota@127.0.0.1:1/ota"]);
  expect([pg.code, pg.stderr.split("\n")[0]]).toEqual([1, "gateway backup: Cannot use the database postgres://ota@127.0.0.1:1/ota: connection refused (is PostgreSQL running there?)"]);
  expect(existsSync(join(work, "pg.backup"))).toBe(false);

  const busy = await run(["restore", file, "--data", gw.dataDir]);
  expect(busy.code).not.toBe(0);
  expect(busy.stderr).toContain("not empty");
});

test("one gateway per data dir: a second serve and restore --force refuse a dir a gateway is serving, and leave it as it was", async () => {
  const gw = await startGateway();
  started.push(gw);
  const file = join(work, "live.backup");
  expect((await run(["backup", "--data", gw.dataDir, "--out", file, ...(await backupOfDatabase(gw.dataDir, file))])).code).toBe(0);
  const serveJson = readFileSync(join(gw.dataDir, "serve.json"), "utf8");
  const token = readFileSync(join(gw.dataDir, "admin-token"), "utf8");

  // A second serve on the same dir (another port) would rewrite serve.json and the TLS certificate under the first.
  const second = await run(["serve", "--data", gw.dataDir, "--listen", "127.0.0.1:0"]);
  expect(second.code).toBe(1);
  expect(second.stderr).toContain(`${gw.dataDir} is in use by the gateway running as PID ${gw.pid}`);
  expect(readFileSync(join(gw.dataDir, "serve.json"), "utf8")).toBe(serveJson);

  // restore --force would move the dir from under the running gateway.
  // A --data that --force may not replace is bad usage (exit 2), as gateway/README.md says.
  const forced = await run(["restore", file, "--data", gw.dataDir, "--force"]);
  expect(forced.code).toBe(2);
  expect(forced.stderr).toContain(`is in use by the gateway running as PID ${gw.pid}: stop it before restoring over it`);
  expect(readFileSync(join(gw.dataDir, "admin-token"), "utf8")).toBe(token);
  expect((await gw.adminFetch("/admin/devices")).status).toBe(200);

  // Stopped, the dir is free again: restore --force replaces it and a gateway serves the restored dir.
  await gw.stop();
  const restored = await run(["restore", file, "--data", gw.dataDir, "--force"]);
  expect(withoutDatabaseNote(restored.stderr)).toBe("");
  expect(restored.code).toBe(0);
  const again = await startGateway({ dataDir: gw.dataDir, args: await restoreOfDatabase(file, gw.dataDir) });
  started.push(again);
  expect((await again.adminFetch("/admin/devices")).status).toBe(200);
}, 120_000);

test("backup keygen never leaves a half pair: with PREFIX.pub present it writes nothing", async () => {
  const prefix = join(work, "half");
  writeFileSync(`${prefix}.pub`, "the public half of a pair whose key is offline\n");
  const r = await run(["backup", "keygen", "--out", prefix]);
  expect(r.code).toBe(1);
  expect(r.stderr).toContain(`Cannot write ${prefix}.pub: it exists (key files are never overwritten)`);
  expect(existsSync(`${prefix}.key`)).toBe(false);
  expect(readFileSync(`${prefix}.pub`, "utf8")).toBe("the public half of a pair whose key is offline\n");
});

test("backup keygen --out into a folder that is not there is bad usage and creates nothing; --out id.pub names the pair id.pub/id.key", async () => {
  const typo = await run(["backup", "keygen", "--out", join(work, "no-such-folder", "id")]);
  expect([typo.code, typo.stderr.split("\n")[0]]).toEqual([
    2,
    `gateway backup keygen: --out ${join(work, "no-such-folder", "id")}: the folder ${join(work, "no-such-folder")} does not exist`,
  ]);
  expect(existsSync(join(work, "no-such-folder"))).toBe(false);
  const pub = await run(["backup", "keygen", "--out", join(work, "pair.pub")]);
  expect(pub.code).toBe(0);
  expect(readdirSync(work).filter((f) => f.startsWith("pair.")).sort()).toEqual(["pair.key", "pair.pub"]);
});

test("backup of a --data that is not there is bad usage, as for every command that takes --data, and writes nothing", async () => {
  const out = join(work, "typo.backup");
  const r = await run(["backup", "--data", join(work, "no-such-dir"), "--out", out]);
  expect({ code: r.code, err: r.stderr }).toEqual({ code: 2, err: expect.stringContaining(`--data ${join(work, "no-such-dir")}: no such folder (the gateway's data dir)`) });
  expect(existsSync(out)).toBe(false);
});

test("restore says which backup it cannot read, and creates nothing; one that is not there is bad usage (exit 2)", async () => {
  const into = join(work, "never-restored");
  const usage = "Run 'gateway restore --help' for usage.\n";
  for (const [file, code, why] of [
    [join(work, "no-such.bak"), 2, `no such file\n${usage}`],
    [join(work, "no-such-folder", "gw.backup"), 2, `no such file\n${usage}`],
    [work, 1, "it is a directory (give the backup file)\n"],
  ] as const) {
    const r = await run(["restore", file, "--data", into]);
    expect({ code: r.code, err: r.stderr }).toEqual({ code, err: `gateway restore: Cannot read the backup ${file}: ${why}` });
  }
  expect(existsSync(into)).toBe(false);
});

test("a registry outside the data dir (--registry-dir, as replicas share) is backed up and restored to a folder of its own", async () => {
  const shared = join(work, "shared-registry");
  const gw = await startGateway({ args: ["--registry-dir", shared] });
  started.push(gw);
  const blob = crypto.getRandomValues(new Uint8Array(64 * 1024));
  const digest = `sha256:${new Bun.CryptoHasher("sha256").update(blob).digest("hex")}`;
  expect((await gw.adminFetch(`/v2/main/web/blobs/uploads/?digest=${digest}`, { method: "POST", body: blob })).status).toBe(201);
  // Work in progress, which a backup leaves out: an upload session, and a write not yet renamed into place.
  mkdirSync(join(shared, "uploads", "session"), { recursive: true });
  writeFileSync(join(shared, "uploads", "session", "data"), "half an upload");
  mkdirSync(join(shared, "tmp"), { recursive: true });
  writeFileSync(join(shared, "tmp", "write"), "a write before its rename");

  expect((await run(["backup", "--data", gw.dataDir, "--out", join(work, "r.backup"), "--registry-dir", shared])).code).toBe(2); // without --with-registry
  const db = await backupOfDatabase(gw.dataDir, join(work, "r.backup"));
  const made = await run(["backup", "--data", gw.dataDir, "--out", join(work, "r.backup"), "--with-registry", "--registry-dir", shared, "--format", "json", ...db]);
  expect(withoutDatabaseNote(made.stderr)).toBe("");
  expect(made.code).toBe(0);
  await gw.stop();

  // Into a non-empty folder: refused before anything is unpacked.
  const busy = join(work, "busy-registry");
  mkdirSync(busy);
  writeFileSync(join(busy, "x"), "x");
  const refused = await run(["restore", join(work, "r.backup"), "--data", join(work, "r-data-0"), "--registry-dir", busy]);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toContain("it is not empty");
  expect(existsSync(join(work, "r-data-0"))).toBe(false);

  // Its parent folders not there yet: made, as --data's are.
  const newShared = join(work, "new-mount", "registries", "restored-registry");
  const restored = await run(["restore", join(work, "r.backup"), "--data", join(work, "r-data"), "--registry-dir", newShared]);
  expect(restored.code).toBe(0);
  expect(restored.stdout).toContain(`the registry into ${newShared}`);
  expect(existsSync(join(work, "r-data", "registry"))).toBe(false);
  expect([existsSync(join(newShared, "uploads", "session")), existsSync(join(newShared, "tmp", "write"))]).toEqual([false, false]);
  // The registry came back with its id, so on PostgreSQL the database's record names it still: no --registry-change.
  await restoreOfDatabase(join(work, "r.backup"), join(work, "r-data"));
  const again = await startGateway({ dataDir: join(work, "r-data"), args: ["--registry-dir", newShared] });
  started.push(again);
  const res = await again.adminFetch(`/v2/main/web/blobs/${digest}`);
  expect(res.status).toBe(200);
  expect(new Uint8Array(await res.arrayBuffer())).toEqual(blob);
}, 120_000);

test("a served SQLite data dir whose gateway.db is gone, or empty, is refused, not started as a new, empty fleet", async () => {
  if (process.env.OTA_TEST_DB === "postgres") return; // a SQLite data dir's file: nothing to lose on PostgreSQL here
  const gw = await startGateway();
  await gw.stop();
  for (const f of ["gateway.db", "gateway.db-wal", "gateway.db-shm"]) rmSync(join(gw.dataDir, f), { force: true });
  const r = await run(["serve", "--data", gw.dataDir, "--listen", "127.0.0.1:0"]);
  expect(r.code).toBe(1);
  expect(r.stderr).toContain(`it was served with the SQLite database ${join(gw.dataDir, "gateway.db")}, which is not there`);
  expect(r.stderr).toContain("restore the data dir from a backup (gateway restore)");
  expect(existsSync(join(gw.dataDir, "gateway.db"))).toBe(false); // nothing written
  // The file there but cut to 0 bytes (a copy that failed): served, it was a new, empty fleet.
  writeFileSync(join(gw.dataDir, "gateway.db"), "");
  const empty = await run(["serve", "--data", gw.dataDir, "--listen", "127.0.0.1:0"]);
  expect(empty.code, empty.stderr).toBe(1);
  expect(empty.stderr).toContain(`it was served with the SQLite database ${join(gw.dataDir, "gateway.db")}, which holds nothing (an empty file)`);
  expect(statSync(join(gw.dataDir, "gateway.db")).size).toBe(0); // nothing written
  removeTempDir(join(gw.dataDir, ".."));
}, 60_000);
