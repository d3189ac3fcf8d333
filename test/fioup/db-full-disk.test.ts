/**
 * fioup.db on a full file system (a tmpfs filled with fallocate): SQLite cannot make WAL's -shm
 * and says only "disk I/O error". Opening it to write says the file system is full, naming the
 * folder, and to free space (DeviceDbFullError: exit 41);
 * `fioup status` still reads it and shows the pending update. On a read-only file system
 * SQLite says only "unable to open database file": said as a read-only file system.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, rmSync, statfsSync } from "node:fs";
import { join } from "node:path";
import type { Target } from "../../lib/api/index.ts";
import { DeviceDb, DeviceDbFullError } from "../../fioup/db.ts";
import { run, tempDir } from "../harness/tmp.ts";
import { collectCli, ROOT } from "./_setup.ts";
import { EXIT, exitCodeFor } from "../../fioup/exit-codes.ts";

let root: string;
let sota: string;
let mounted = false;

const target: Target = {
  name: "amd64-linux-2",
  entry: { length: 0, hashes: {}, custom: { version: "2", hardwareIds: ["amd64-linux"], tags: [], docker_compose_apps: {} } },
} as Target;

beforeAll(async () => {
  root = await tempDir("fioup-full-db-");
  sota = join(root, "var/sota");
  mkdirSync(sota, { recursive: true });
  const m = await run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", sota]);
  expect(m.code).toBe(0);
  mounted = true;
  const db = new DeviceDb(join(sota, "fioup.db"));
  db.createUpdate({ id: "01FULL", fromTarget: "amd64-linux-1", target, explicit: false });
  db.setState("01FULL", "fetched");
  db.close(); // checkpointed: the -wal and -shm are gone, and must be made again to open it
  const fs = statfsSync(sota);
  expect((await run(["fallocate", "-l", String(fs.bavail * fs.bsize), join(sota, "filler")])).code).toBe(0);
}, 60_000);

afterAll(async () => {
  if (mounted) await run(["umount", sota]);
  rmSync(root, { recursive: true, force: true });
});

describe("fioup.db on a full file system", () => {
  test("opening it to write says the file system holding it is full and to free space", () => {
    let err: unknown;
    try {
      new DeviceDb(join(sota, "fioup.db")).close();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DeviceDbFullError);
    expect((err as Error).message).toContain(`Cannot open the device database ${join(sota, "fioup.db")}: the file system holding ${sota} is full`);
    expect((err as Error).message).toContain(`Free space on it (df ${sota}), then run the command again`);
    expect(exitCodeFor(err)).toBe(EXIT.NO_SPACE); // 41, as for any lack of space
  });

  test("it still opens to read, with the pending update", () => {
    const db = new DeviceDb(join(sota, "fioup.db"), { readOnly: true });
    try {
      expect(db.pendingUpdate()?.state).toBe("fetched");
    } finally {
      db.close();
    }
  });

  test("fioup status works and shows the pending update", async () => {
    const p = Bun.spawn([process.execPath, join(ROOT, "fioup/main.ts"), "status", "--no-apps", "--format", "json"], {
      env: { ...process.env, FIOUP_ROOT: root },
      stdout: "pipe",
      stderr: "pipe",
      cwd: ROOT,
    });
    const r = await collectCli(p, "fioup status");
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.pending.state).toBe("fetched");
    expect(r.json.pending.toTarget).toBe("amd64-linux-2");
  }, 60_000);
});

test("fioup.db on a read-only file system: said as such, with what to do, not SQLite's 'unable to open database file'", async () => {
  const ro = await tempDir("fioup-ro-db-");
  const dir = join(ro, "sota");
  mkdirSync(dir);
  new DeviceDb(join(dir, "fioup.db")).close();
  expect((await run(["mount", "--bind", dir, dir])).code).toBe(0);
  try {
    expect((await run(["mount", "-o", "remount,bind,ro", dir])).code).toBe(0);
    for (const readOnly of [false, true]) {
      expect(() => new DeviceDb(join(dir, "fioup.db"), { readOnly })).toThrow(
        `Cannot open the device database ${join(dir, "fioup.db")}: the file system holding ${dir} is read-only: fioup.db needs to write beside it`,
      );
    }
  } finally {
    await run(["umount", dir]);
    rmSync(ro, { recursive: true, force: true });
  }
});
