import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Target } from "../lib/api/index.ts";
import { DeviceDb } from "./db.ts";
import { makeEvent } from "./events/event.ts";
import { flushEvents } from "./events/sender.ts";

const dir = mkdtempSync(join(tmpdir(), "fioup-db-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const target = (v: string): Target => ({
  name: `hw-${v}`,
  entry: { length: 0, hashes: {}, custom: { version: v, hardwareIds: ["hw"], tags: ["main"], docker_compose_apps: {} } },
});

describe("DeviceDb", () => {
  test("keeps the update state and steps across reopening", () => {
    const path = join(dir, "a.db");
    let db = new DeviceDb(path);
    db.createUpdate({ id: "01A", fromTarget: null, target: target("1"), explicit: false });
    db.setState("01A", "fetching", { step: "init" });
    db.close();
    db = new DeviceDb(path);
    const u = db.pendingUpdate()!;
    expect(u.state).toBe("fetching");
    expect(u.steps.map((s) => s.step)).toEqual(["init"]);
    expect(u.target.entry.custom.version).toBe("1");
    db.setState("01A", "completed");
    expect(db.pendingUpdate()).toBeUndefined();
    db.close();
  });

  test("the newest update is the one made last, whatever its id says (a ULID of a clock since set back)", () => {
    const db = new DeviceDb(join(dir, "order.db"));
    db.createUpdate({ id: "01Z", fromTarget: null, target: target("1"), explicit: false }); // made with the clock ahead
    db.setState("01Z", "completed");
    db.createUpdate({ id: "01A", fromTarget: "hw-1", target: target("2"), explicit: false }); // after NTP set it back
    expect(db.lastUpdate()!.id).toBe("01A");
    expect(db.pendingUpdate()!.id).toBe("01A");
    expect(db.listUpdates().map((u) => u.id)).toEqual(["01A", "01Z"]);
    db.close();
  });

  test("event queue: delivered in order, deleted only after the gateway accepted them", async () => {
    const db = new DeviceDb(join(dir, "b.db"));
    const s = { correlationId: "c", targetName: "t", version: "1" };
    db.enqueueEvents([makeEvent("UpdateInitStarted", s), makeEvent("UpdateInitCompleted", s)]);
    db.enqueueEvents([makeEvent("EcuDownloadStarted", s)]);
    const failing = { json: async () => { throw new Error("offline"); } };
    expect((await flushEvents(db, failing)).sent).toBe(0);
    expect(db.queuedEventCount()).toBe(3);
    const got: string[] = [];
    const ok = { json: async (_m: string, _p: string, body?: unknown) => { for (const e of body as any[]) got.push(e.eventType.id); return undefined; } };
    expect((await flushEvents(db, ok, 2)).sent).toBe(3);
    expect(got).toEqual(["UpdateInitStarted", "UpdateInitCompleted", "EcuDownloadStarted"]);
    expect(db.queuedEventCount()).toBe(0);
    db.close();
  });

  test("event queue: an event the gateway rejects as invalid is dropped alone, the rest delivered", async () => {
    const db = new DeviceDb(join(dir, "d.db"));
    const s = { correlationId: "c", targetName: "t", version: "1" };
    db.enqueueEvents([makeEvent("UpdateInitStarted", s), makeEvent("UpdateInitCompleted", s, { details: "poison" }), makeEvent("EcuDownloadStarted", s)]);
    const got: string[] = [];
    const gw = {
      json: async (_m: string, _p: string, body?: unknown) => {
        const events = body as any[];
        if (events.some((e) => e.event.details === "poison")) throw Object.assign(new Error("400"), { status: 400 });
        for (const e of events) got.push(e.eventType.id);
        return undefined;
      },
    };
    const r = await flushEvents(db, gw);
    expect(r).toEqual({ sent: 2, dropped: 1 });
    expect(got).toEqual(["UpdateInitStarted", "EcuDownloadStarted"]);
    expect(db.queuedEventCount()).toBe(0);
    db.close();
  });

  test("bad targets and the current target persist", () => {
    const db = new DeviceDb(join(dir, "c.db"));
    db.markBad("hw-3", "start failed");
    db.setCurrentTarget(target("2"));
    expect(db.badTargets()).toEqual(["hw-3"]);
    expect(db.currentTarget()?.name).toBe("hw-2");
    db.close();
  });

  test("a target that runs is no longer bad, and a failure noted against it is forgotten", () => {
    const db = new DeviceDb(join(dir, "d.db"));
    expect(db.notePermanentFailure("hw-4", "the update does not fit")).toBe(false);
    expect(db.notePermanentFailure("hw-4", "the update does not fit")).toBe(true); // twice: bad
    expect(db.badTargets()).toEqual(["hw-4"]);
    expect(db.notePermanentFailure("hw-5", "blob x does not match its digest")).toBe(false);
    // Named and installed after all (`fioup update 4`, say once the filesystem was grown).
    db.setCurrentTarget(target("4"));
    db.setCurrentTarget(target("5"));
    expect(db.badTargets()).toEqual([]);
    // A new failure of hw-5 counts from one again.
    expect(db.notePermanentFailure("hw-5", "blob x does not match its digest")).toBe(false);
    db.close();
  });

  test("opening waits for a lock another process holds instead of failing with 'database is locked'", async () => {
    const path = join(dir, "locked.db");
    new DeviceDb(path).close();
    // Another process (a `fioup status`, or the first opener recovering the WAL after a power
    // cut) holds the database exclusively for a moment while fioup opens it.
    const holder = Bun.spawn([process.execPath, "-e", `
      const { Database } = require("bun:sqlite");
      const db = new Database(${JSON.stringify(path)});
      db.exec("PRAGMA journal_mode = DELETE; BEGIN EXCLUSIVE");
      console.log("held");
      setTimeout(() => { db.exec("COMMIT"); db.exec("PRAGMA journal_mode = WAL"); db.close(); }, 400);
    `], { stdout: "pipe" });
    const reader = holder.stdout.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toContain("held");
    const db = new DeviceDb(path);
    expect(db.pendingUpdate()).toBeUndefined();
    db.close();
    expect(await holder.exited).toBe(0);
  });
});
