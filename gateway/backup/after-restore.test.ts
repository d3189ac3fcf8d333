import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemoryTufStorage } from "../ota/memory-storage.ts";
import { TufRepo } from "../ota/repo.ts";
import { LEAP_MARGIN, RESTORE_MARK, leapAfterRestore, markRestored } from "./after-restore.ts";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "after-restore-"));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

/** The one store call the leap makes: claimMeta, first value wins. */
const metaStore = () => {
  const meta = new Map<string, string>();
  return { claimMeta: async (k: string, v: string) => (meta.has(k) ? meta.get(k)! : (meta.set(k, v), v)) };
};

describe("leapAfterRestore", () => {
  test("signs one version a second since the backup and LEAP_MARGIN above the stored ones, once; replicas of the same restore leap to the same floor", async () => {
    const now = new Date("2026-12-06T12:00:00Z");
    await markRestored(dir, new Date(now.getTime() - 3600_000).toISOString());
    const copy = join(dir, "replica");
    mkdirSync(join(copy, "tuf"), { recursive: true });
    writeFileSync(join(copy, RESTORE_MARK), await Bun.file(join(dir, RESTORE_MARK)).text()); // a replica's copy of the restored dir

    const storage = new MemoryTufStorage();
    const store = metaStore();
    const tuf = await TufRepo.open({ storage, keysDir: join(dir, "tuf", "keys") });
    const leap = await leapAfterRestore({ dataDir: dir, store, tuf, now });
    expect(leap?.to).toEqual({ targets: 1 + 3600 + LEAP_MARGIN, snapshot: 1 + 3600 + LEAP_MARGIN, timestamp: 1 + 3600 + LEAP_MARGIN });
    expect(await tuf.versions()).toMatchObject({ root: 1, targets: 3601 + LEAP_MARGIN, timestamp: 3601 + LEAP_MARGIN });
    expect(existsSync(join(dir, RESTORE_MARK))).toBe(false);
    expect(await leapAfterRestore({ dataDir: dir, store, tuf, now })).toBeUndefined();

    // The replica, later, on the same database: the floor claimed first, nothing more signed.
    const replica = await TufRepo.open({ storage, keysDir: join(dir, "tuf", "keys") });
    expect(await leapAfterRestore({ dataDir: copy, store, tuf: replica, now: new Date(now.getTime() + 60_000) })).toBeUndefined();
    expect((await replica.versions()).timestamp).toBe(3601 + LEAP_MARGIN);
    expect(existsSync(join(copy, RESTORE_MARK))).toBe(false);
  });

  test("with the targets key offline the mark stays, and the next start with the key back signs targets.json at the same floor", async () => {
    const now = new Date("2026-12-06T12:00:00Z");
    await markRestored(dir, new Date(now.getTime() - 60_000).toISOString());
    const keys = join(dir, "tuf", "keys");
    const storage = new MemoryTufStorage();
    const store = metaStore();
    const tuf = await TufRepo.open({ storage, keysDir: keys });
    renameSync(join(keys, "targets.json"), join(dir, "targets-offline.json"));
    const floor = 1 + 60 + LEAP_MARGIN;
    expect((await leapAfterRestore({ dataDir: dir, store, tuf, now }))?.needsOfflineKey).toEqual(["targets"]);
    expect(await tuf.versions()).toMatchObject({ targets: 1, snapshot: floor, timestamp: floor });
    expect(existsSync(join(dir, RESTORE_MARK))).toBe(true); // not done: targets.json is behind

    renameSync(join(dir, "targets-offline.json"), join(keys, "targets.json"));
    const again = await TufRepo.open({ storage, keysDir: keys }); // the next start
    expect((await leapAfterRestore({ dataDir: dir, store, tuf: again, now: new Date(now.getTime() + 3600_000) }))?.needsOfflineKey).toEqual([]);
    expect(await again.versions()).toMatchObject({ targets: floor, snapshot: floor + 1, timestamp: floor + 1 }); // the same floor, not a new one
    expect(existsSync(join(dir, RESTORE_MARK))).toBe(false);
  });

  test("a mark whose time cannot be read leaps ten years' worth, within the 2^31 of the PostgreSQL column", async () => {
    mkdirSync(join(dir, "tuf"), { recursive: true });
    writeFileSync(join(dir, RESTORE_MARK), "{garbled");
    const tuf = await TufRepo.open({ storage: new MemoryTufStorage(), keysDir: join(dir, "tuf", "keys") });
    await leapAfterRestore({ dataDir: dir, store: metaStore(), tuf });
    const { timestamp } = await tuf.versions();
    expect(timestamp).toBe(1 + 10 * 365 * 86_400 + LEAP_MARGIN);
    expect(timestamp).toBeLessThan(2 ** 31 / 6);
  });
});
