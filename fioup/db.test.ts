import { afterAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Target } from "../lib/api/index.ts";
import { Value } from "@sinclair/typebox/value";
import { EventBatch, targetContent, type DeviceEvent } from "../lib/api/index.ts";
import { DeviceDb, MAX_QUEUED_EVENT_BYTES } from "./db.ts";
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

  test("event queue: past its bound the oldest go first, the update in progress keeps its say, and the gap is noted for the gateway", async () => {
    const root = join(dir, "bounded");
    mkdirSync(join(root, "var/sota"), { recursive: true });
    const db = new DeviceDb(join(root, "var/sota/fioup.db"));
    // Events stamped a second apart from `t0`, each carrying a 4 KiB error.
    const t0 = Date.parse("2026-06-01T00:00:00Z");
    let n = 0;
    const at = (i: number) => new Date(t0 + i * 1000).toISOString().replace(/\.\d+Z$/, "Z");
    const ev = (type: Parameters<typeof makeEvent>[0], correlationId: string, details: unknown = "x".repeat(4096)): DeviceEvent => ({
      ...makeEvent(type, { correlationId, targetName: "hw-2", version: "2" }, { details }),
      deviceTime: at(n++),
    });
    // The update in progress: its download started first, and its install was deferred.
    db.createUpdate({ id: "01CUR", fromTarget: "hw-1", target: target("2"), explicit: false });
    db.enqueueEvents([ev("EcuDownloadStarted", "01CUR"), ev("UpdateDeferred", "01CUR", { reason: "window" })]);
    // Then a device offline for months in a retry loop: a failed update every poll, 4 events each.
    const loops = Math.ceil((1.5 * MAX_QUEUED_EVENT_BYTES) / (4 * 4300));
    for (let i = 0; i < loops; i++) {
      const c = `loop-${i}`;
      db.enqueueEvents([ev("UpdateInitStarted", c), ev("UpdateInitCompleted", c), ev("EcuDownloadStarted", c), ev("EcuDownloadCompleted", c)]);
    }
    db.enqueueEvents([ev("UpdateDeferred", "01CUR", { reason: "lock" })]);
    const size = db.db.query<{ n: number }, []>("SELECT SUM(octet_length(body)) AS n FROM events").get()!.n;
    expect(size).toBeLessThanOrEqual(MAX_QUEUED_EVENT_BYTES);
    const queued = db.peekEvents(1e6).map((r) => r.event);
    const ids = (c: string) => queued.filter((e) => e.event.correlationId === c).map((e) => e.eventType.id);
    // The oldest retries are gone, the newest kept whole; the update in progress lost nothing.
    expect(ids("loop-0")).toEqual([]);
    expect(ids(`loop-${loops - 1}`)).toEqual(["UpdateInitStarted", "UpdateInitCompleted", "EcuDownloadStarted", "EcuDownloadCompleted"]);
    expect(ids("01CUR")).toEqual(["EcuDownloadStarted", "UpdateDeferred", "UpdateDeferred"]);
    // One note says how many went, and from when to when by the device's clock.
    const notes = queued.filter((e) => e.eventType.id === "EventsDropped");
    expect(notes).toHaveLength(1);
    const kept = queued.filter((e) => e.event.correlationId.startsWith("loop-")).length;
    const note = JSON.parse(notes[0]!.event.details!);
    expect(note).toMatchObject({ dropped: 4 * loops - kept, from: at(2), to: at(2 + 4 * loops - kept - 1) });
    expect(note.why).toContain(`at most ${MAX_QUEUED_EVENT_BYTES} bytes`);
    expect(db.droppedEvents()).toEqual({ dropped: note.dropped, from: note.from, to: note.to });

    // `fioup status` says so next to the queue's length.
    const status = Bun.spawnSync([process.execPath, join(import.meta.dir, "main.ts"), "status", "--no-apps"], {
      env: { ...process.env, FIOUP_ROOT: root, DOCKER_HOST: "unix:///nonexistent.sock" },
    });
    expect(status.stdout.toString()).toContain(
      `Events waiting to be sent: ${queued.length} (${note.dropped} older ones dropped, of ${note.from} to ${note.to}: the queue keeps at most ${MAX_QUEUED_EVENT_BYTES} bytes; the gateway is told)`,
    );

    // Dropping again adds to the note not yet sent: still one note, counting both.
    for (let i = 0; i < loops / 2; i++) db.enqueueEvents([ev("UpdateInitStarted", `later-${i}`), ev("UpdateInitCompleted", `later-${i}`)]);
    const again = db.peekEvents(1e6).map((r) => r.event);
    expect(again.filter((e) => e.eventType.id === "EventsDropped")).toHaveLength(1);
    expect(db.droppedEvents()!.dropped).toBeGreaterThan(note.dropped);
    expect(db.droppedEvents()!.from).toBe(at(2));
    expect(again.filter((e) => e.event.correlationId === "01CUR").map((e) => e.eventType.id)).toEqual(["EcuDownloadStarted", "UpdateDeferred", "UpdateDeferred"]);

    // Once the gateway answers, the note goes with the rest, in order, in batches its schema takes.
    const got: DeviceEvent[] = [];
    const gw = { json: async (_m: string, _p: string, body?: unknown) => { expect(Value.Check(EventBatch, body)).toBe(true); got.push(...(body as DeviceEvent[])); return undefined; } };
    expect((await flushEvents(db, gw)).sent).toBe(again.length);
    expect(got.map((e) => e.id)).toEqual(again.map((e) => e.id));
    expect(db.queuedEventCount()).toBe(0);
    expect(db.droppedEvents()).toBeUndefined();
    db.close();
  });

  test("event queue: a queue of hundreds of thousands of events, as an unbounded older release left it, is cut at the first enqueue", () => {
    const db = new DeviceDb(join(dir, "huge.db"));
    // 700,000 small events queued raw (more than a call can take as spread arguments), made in SQL.
    const n = 700_000;
    db.db.run(
      `WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?1)
       INSERT INTO events (body) SELECT json_object('id', 'e' || i, 'deviceTime', '2026-06-01T00:00:00Z',
         'eventType', json_object('id', 'UpdateInitStarted', 'version', 0),
         'event', json_object('correlationId', 'old-' || i, 'success', json('true'), 'targetName', 'hw-1', 'version', '1')) FROM c`,
      [n],
    );
    db.enqueueEvents([makeEvent("UpdateInitStarted", { correlationId: "new", targetName: "hw-2", version: "2" })]);
    const size = db.db.query<{ n: number }, []>("SELECT SUM(octet_length(body)) AS n FROM events").get()!.n;
    expect(size).toBeLessThanOrEqual(MAX_QUEUED_EVENT_BYTES);
    const dropped = db.droppedEvents()!;
    expect(dropped.dropped + db.queuedEventCount() - 1).toBe(n + 1); // each event kept or counted; one note
    expect(db.peekEvents(1e6).at(-1)!.event.event.correlationId).toBe("new");
    db.close();
  }, 60_000); // some 4 s: 700,000 rows written, read and deleted

  test("bad targets and the current target persist", () => {
    const db = new DeviceDb(join(dir, "c.db"));
    db.markBad(target("3"), "start failed");
    db.setCurrentTarget(target("2"));
    expect(db.badTargets()).toEqual(["hw-3"]);
    expect(db.currentTarget()?.name).toBe("hw-2");
    db.close();
  });

  test("a bad mark records what failed; marks from before that count by name", () => {
    const path = join(dir, "marks.db");
    // A device database as fioup left it before marks had content.
    const old = new Database(path, { create: true });
    old.exec("CREATE TABLE bad_targets (name TEXT PRIMARY KEY, reason TEXT, at TEXT NOT NULL)");
    old.query("INSERT INTO bad_targets (name, reason, at) VALUES ('hw-6', 'start failed', '2026-12-01T00:00:00Z')").run();
    old.close();
    const db = new DeviceDb(path);
    db.markBad(target("7"), "start failed");
    expect(db.badTargets()).toEqual(["hw-6", "hw-7"]);
    const marks = db.badTargetMarks();
    expect(marks.get("hw-6")).toBeNull();
    expect(marks.get("hw-7")).toBe(targetContent(target("7").entry));
    db.close();
  });

  test("a target that runs is no longer bad, and a failure noted against it is forgotten", () => {
    const db = new DeviceDb(join(dir, "d.db"));
    expect(db.notePermanentFailure(target("4"), "the update does not fit")).toBe(false);
    expect(db.notePermanentFailure(target("4"), "the update does not fit")).toBe(true); // twice: bad
    expect(db.badTargets()).toEqual(["hw-4"]);
    expect(db.notePermanentFailure(target("5"), "blob x does not match its digest")).toBe(false);
    // Named and installed after all (`fioup update 4`, say once the filesystem was grown).
    db.setCurrentTarget(target("4"));
    db.setCurrentTarget(target("5"));
    expect(db.badTargets()).toEqual([]);
    // A new failure of hw-5 counts from one again.
    expect(db.notePermanentFailure(target("5"), "blob x does not match its digest")).toBe(false);
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

  test("a fioup.db of 0 bytes is said, not silently started afresh: read as empty by status, made anew by a writer", () => {
    const path = join(dir, "empty.db");
    writeFileSync(path, "");
    const lines: string[] = [];
    const reader = new DeviceDb(path, { readOnly: true, warn: (l) => lines.push(l) });
    expect(reader.pendingUpdate()).toBeUndefined();
    expect(reader.badTargets()).toEqual([]);
    reader.close();
    expect(lines).toEqual([`${path} is empty (0 bytes): no update is recorded; the next fioup check or update starts it afresh`]);
    expect(Bun.file(path).size).toBe(0); // reading wrote nothing

    lines.length = 0;
    const writer = new DeviceDb(path, { warn: (l) => lines.push(l) });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toStartWith(`${path} was empty (0 bytes: a power cut as it was made, or a damaged file system): it starts afresh`);
    expect(lines[0]).toContain("the targets marked bad are no longer known");
    writer.markBad(target("3"), "start failed");
    writer.close();

    // A database with content is opened without a word.
    lines.length = 0;
    const again = new DeviceDb(path, { warn: (l) => lines.push(l) });
    expect(again.badTargets()).toEqual(["hw-3"]);
    again.close();
    expect(lines).toEqual([]);
  });
});
