/**
 * The space check on a file system with no byte left: fioup.db (its -wal and -shm left by a run
 * that was killed after it saved the update) and the blob store on a small tmpfs that something
 * else filled. The refusal is written to fioup.db too, which such a disk refuses: fioup must
 * still say what is full and how much the update needs (exit 41), not SQLite's "database or
 * disk is full", and lose nothing: once space is freed the same command fetches the update.
 * The same for a disk that fills once the update is fetched: the install's first write (the
 * update lock) is refused, said as such, and the fetched update waits for the freed disk.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { collectCli, deviceRig, httpdCompose, httpdImage, pushImage, randomBytes, ROOT, type DeviceRig } from "./_setup.ts";

const MiB = 1 << 20;
let rig: DeviceRig;

beforeAll(async () => {
  rig = await deviceRig({ app: `fulldisk${process.pid}`, repo: "test/fulldisk", body: "full v1" });
  const web = await pushImage(rig.upstream, "test/fulldisk", "v2", { ...httpdImage("full v2"), layers: [{ "/www/index.html": "full v2" }, { "/big.bin": randomBytes(8 * MiB) }] });
  await rig.pub.commit({ [`${rig.app}/docker-compose.yml`]: httpdCompose(web, rig.port) });
  await rig.pub.publish(2);
  await rig.device.stateOnTmpfs("64m"); // registered and on v1 already: copied in
}, 180_000);

afterAll(async () => {
  await rig?.device.stateOffTmpfs();
  await rig?.stop();
});

test("on a disk with no byte left the space refusal says what is full and what the update needs, exit 41; freed, the same command fetches it", async () => {
  const { device } = rig;
  // A run killed once the update is saved: fioup.db's -wal and -shm stay, so the next run opens it.
  const fioup = process.env.FIOUP_BIN ? [process.env.FIOUP_BIN] : [process.execPath, join(ROOT, "fioup/main.ts")];
  const cut = await collectCli(
    Bun.spawn([...fioup, "fetch"], { env: { ...process.env, ...device.env(), FIOUP_FAULT: "state:initialized" }, stdout: "pipe", stderr: "pipe", cwd: ROOT }),
    "fioup fetch (killed)",
  );
  expect(cut.code, cut.stderr).not.toBe(0);
  expect(device.updateState()?.state).toBe("initialized");
  expect(existsSync(join(device.sotaDir, "fioup.db-shm"))).toBe(true);

  const fillers = await device.fillStateDisk();
  expect(statfsSync(device.sotaDir).bavail).toBe(0);

  const r = await device.fioup("fetch");
  expect(r.stderr).toContain(`Not enough space for the update in the blob store ${device.storeDir}: need `);
  expect(r.stderr).not.toContain("disk is full");
  expect(r.code, r.stderr).toBe(41);
  expect(r.stderr).toContain(`fioup.db cannot record what was sent: the file system holding ${device.sotaDir} is full`);
  // Nothing lost: the update is saved as it was, and status reads it.
  expect(device.updateState()?.state).toBe("initialized");
  const st = await device.fioup("status", "--no-apps");
  expect(st.code, st.stderr).toBe(0);
  expect(st.json.pending.state).toBe("initialized");

  for (const f of fillers) rmSync(f);
  const again = await device.fioup("fetch");
  expect(again.code, again.stderr).toBe(0);
  expect(again.json.state).toBe("fetched");
}, 180_000);

test("a disk that fills between fetch and install: the install says what is full, exit 41, loses nothing; freed, the same command installs", async () => {
  const { device } = rig;
  const f = await device.fioup("fetch");
  expect(f.code, f.stderr).toBe(0);
  expect(device.updateState()?.state).toBe("fetched");
  const lock = join(device.sotaDir, "update.lock");

  // A lock left by a power cut: taken over, its page freed and used again, so the first write
  // refused is the install's record in fioup.db.
  writeFileSync(lock, "999999 1 x\n");
  let fillers = await device.fillStateDisk();
  expect(statfsSync(device.sotaDir).bavail).toBe(0);
  const db = await device.fioup("install");
  expect(db.stderr).toContain(`fioup install: Cannot write the device database ${join(device.sotaDir, "fioup.db")}: the file system holding ${device.sotaDir} is full`);
  expect(db.stderr).toContain(`nothing was written, what it held stays as it was. Free space on it (df ${device.sotaDir})`);
  expect(db.code, db.stderr).toBe(41);
  expect(device.updateState()?.state).toBe("fetched");

  // No lock file left: the update lock is the first write, said as such, and no empty lock file stays.
  expect(existsSync(lock)).toBe(false);
  fillers = await device.fillStateDisk();
  expect(statfsSync(device.sotaDir).bavail).toBe(0);
  const r = await device.fioup("install");
  expect(r.stderr).toContain(`Cannot take the lock ${lock}: no space left on the device; free space on its file system (df ${device.sotaDir})`);
  expect(r.code, r.stderr).toBe(41);
  expect(existsSync(lock)).toBe(false);
  expect(device.updateState()?.state).toBe("fetched");

  for (const f of fillers) rmSync(f);
  const again = await device.fioup("install");
  expect(again.code, again.stderr).toBe(0);
  expect(device.updateState()?.state).toBe("installed");
}, 180_000);
