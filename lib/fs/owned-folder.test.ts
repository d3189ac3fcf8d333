import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeOwnedFolder, removeDeadFolders } from "./owned-folder.ts";

const parent = mkdtempSync(join(tmpdir(), "owned-folder-"));
afterAll(() => rmSync(parent, { recursive: true, force: true }));

test("a killed owner's folder is removed by the next run; a live owner's, another prefix's and a young lockless one stay", async () => {
  const mine = await makeOwnedFolder(parent, "work-", ".owner.lock");
  const dead = join(parent, "work-dead");
  mkdirSync(dead);
  // What a SIGKILLed owner leaves: its lock naming a process that is gone (PID, start time, boot).
  const gone = Bun.spawnSync(["true"]).pid;
  writeFileSync(join(dead, ".owner.lock"), `${gone} 1 x\n`);
  writeFileSync(join(dead, "saved-image.tar"), "data");
  const young = join(parent, "work-young");
  mkdirSync(young);
  const old = join(parent, "work-old");
  mkdirSync(old);
  utimesSync(old, new Date(Date.now() - 7200_000), new Date(Date.now() - 7200_000));
  const other = join(parent, "other-dead");
  mkdirSync(other);
  writeFileSync(join(other, ".owner.lock"), `${gone} 1 x\n`);

  expect(await removeDeadFolders(parent, "work-", ".owner.lock")).toEqual([{ path: dead, pid: gone, removed: true }]);
  expect([existsSync(mine), existsSync(dead), existsSync(young), existsSync(old), existsSync(other)]).toEqual([true, false, true, true, true]);
  // Without a lock, only once old enough (the moment between mkdtemp and the lock, or an older release's).
  expect(await removeDeadFolders(parent, "work-", ".owner.lock", { locklessAfterMs: 3600_000 })).toEqual([{ path: old, removed: true }]);
  expect(existsSync(young)).toBe(true);
});
