/**
 * The hold step writes each event with the hold record it describes, in one transaction: a
 * deferral's UpdateDeferred with the record (else the next check, finding no record, queues the
 * deferral again), a release's UpdateHoldReleased with the record's removal (else the next run,
 * finding the record, sends the release again). A refused record write leaves no event. The DB
 * is real, the refusal a SQLite trigger on the record's key; an update lock holds the install.
 */
import { Database } from "bun:sqlite";
import { afterAll, describe, expect, setSystemTime, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Target } from "../../lib/api/index.ts";
import { resolveConfig } from "../config.ts";
import { DeviceDb } from "../db.ts";
import type { AppRuntime, UpdateContext } from "./context.ts";
import { holdRecord, holdStep } from "./hold.ts";
import { updateLocksDir } from "./update-locks.ts";

const dir = mkdtempSync(join(tmpdir(), "fioup-hold-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const target: Target = {
  name: "hw-2",
  entry: { length: 0, hashes: {}, custom: { version: "2", hardwareIds: ["hw"], tags: ["main"], docker_compose_apps: {} } },
};

/** A device DB with a fetched update to `target`, the context of its hold step, and SQL on the same file. */
function fetchedUpdate(name: string) {
  const path = join(dir, `${name}.db`);
  const db = new DeviceDb(path);
  db.createUpdate({ id: `01${name.toUpperCase()}`, fromTarget: null, target, explicit: false });
  db.setState(`01${name.toUpperCase()}`, "fetched");
  const cfg = resolveConfig({}, { root: dir, sotaDir: join(dir, name) });
  const ctx: UpdateContext = {
    cfg,
    db,
    runtime: {} as AppRuntime, // not used by the hold step
    hooks: {},
    updateId: `01${name.toUpperCase()}`,
    registry: () => {
      throw new Error("no registry");
    },
  };
  const sql = (q: string) => {
    const raw = new Database(path);
    try {
      raw.run(q);
    } finally {
      raw.close();
    }
  };
  const events = () => db.peekEvents(100).map((e) => e.event.eventType.id);
  const lock = join(updateLocksDir(cfg), "backup");
  mkdirSync(updateLocksDir(cfg), { recursive: true });
  return { db, ctx, sql, events, lock };
}

describe("holdStep", () => {
  test("on a clock before NTP (1970), a lock hold's end is said in the event's own clock: a day from its deviceTime, not 56 years", async () => {
    const { db, ctx, lock } = fetchedUpdate("unsetclock"); // the update was made with the clock right
    writeFileSync(lock, "backup running\n");
    setSystemTime(new Date("1970-01-01T00:10:00Z")); // a reboot, no battery-backed clock
    try {
      await expect(holdStep().run(ctx)).rejects.toThrow("deferred");
      setSystemTime(new Date("1970-01-01T00:20:00Z"));
      await expect(holdStep().run(ctx)).rejects.toThrow("deferred"); // now reckoned from when the update was made
    } finally {
      setSystemTime();
    }
    const deferred = db.peekEvents(100).map((e) => e.event).filter((e) => e.eventType.id === "UpdateDeferred");
    expect(deferred.length).toBeGreaterThan(0);
    for (const e of deferred) {
      const { until } = JSON.parse(e.event.details as string) as { until: string };
      // The gateway adds the device's skew (its receipt against deviceTime) to this end.
      const ahead = Date.parse(until) - Date.parse(e.deviceTime);
      expect(ahead).toBeGreaterThan(0);
      expect(ahead).toBeLessThanOrEqual(24 * 3600_000);
    }
    db.close();
  });

  test("a deferral whose record cannot be saved queues no UpdateDeferred", async () => {
    const { db, ctx, sql, events, lock } = fetchedUpdate("defer");
    writeFileSync(lock, "backup running\n");
    sql("CREATE TRIGGER refuse_hold BEFORE INSERT ON kv WHEN NEW.key LIKE 'hold:%' BEGIN SELECT RAISE(ABORT, 'the record is refused'); END");
    await expect(holdStep().run(ctx)).rejects.toThrow("the record is refused");
    expect(holdRecord(db, target.name)).toBeUndefined();
    expect(events()).not.toContain("UpdateDeferred");
    db.close();
  });

  test("a release whose record cannot be dropped queues no UpdateHoldReleased", async () => {
    const { db, ctx, sql, events, lock } = fetchedUpdate("release");
    writeFileSync(lock, "backup running\n");
    await expect(holdStep().run(ctx)).rejects.toThrow("deferred");
    expect(events()).toContain("UpdateDeferred");
    expect(holdRecord(db, target.name)?.reason).toBe("lock");

    rmSync(lock);
    sql("CREATE TRIGGER keep_hold BEFORE DELETE ON kv WHEN OLD.key LIKE 'hold:%' BEGIN SELECT RAISE(ABORT, 'the record is kept'); END");
    await expect(holdStep().run(ctx)).rejects.toThrow("the record is kept");
    expect(holdRecord(db, target.name)?.reason).toBe("lock");
    expect(events()).not.toContain("UpdateHoldReleased");

    sql("DROP TRIGGER keep_hold");
    await holdStep().run(ctx); // released now: both written
    expect(holdRecord(db, target.name)).toBeUndefined();
    expect(events().filter((t) => t === "UpdateHoldReleased").length).toBe(1);
    db.close();
  });
});
