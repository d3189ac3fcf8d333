import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DeviceEvent } from "../../lib/api/index.ts";
import { EventWriter } from "./_event-writer.ts";
import { EventWriteError } from "./_writer-thread.ts";
import { refusals } from "./_queue-full.ts";
import { STORE_RETRY_AFTER_S } from "./types.ts";

let dir: string;
let path: string;
let writer: EventWriter;

const ev = (id: string, extra: Record<string, unknown> = {}): DeviceEvent => ({
  id,
  deviceTime: "2026-01-01T00:00:00Z",
  eventType: { id: "EcuDownloadStarted", version: 2 },
  event: { correlationId: "c", ...extra },
});

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "event-writer-"));
  path = join(dir, "db.sqlite");
  const db = new Database(path);
  db.exec("PRAGMA journal_mode = WAL");
  db.exec("CREATE TABLE events (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, device_uuid TEXT NOT NULL, received_at TEXT NOT NULL, body TEXT NOT NULL, UNIQUE (device_uuid, id))");
  // Stands for any per-row failure inside the worker's transaction.
  db.exec("CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.device_uuid = 'dev-refused' BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END");
  db.close();
  writer = new EventWriter(path);
});

afterAll(async () => {
  await writer.close();
  await rm(dir, { recursive: true, force: true });
});

describe("EventWriter", () => {
  test("while batches go out often, an event a moment after the last waits for the next to share its commit", async () => {
    await writer.append("dev-trickle", [ev("t0")]); // a batch just went out: events are coming often
    const before = writer.batchesSent;
    for (let i = 1; i <= 10; i++) {
      const first = writer.append("dev-trickle", [ev(`a${i}`)]);
      await new Promise((r) => setImmediate(r)); // a later turn of the event loop: a batch sent at once would be on its way
      const second = writer.append("dev-trickle", [ev(`b${i}`)]);
      expect(await Promise.all([first, second])).toEqual([1, 1]); // each stored, once
    }
    // Sent at the end of each turn, every pair would be two commits (20).
    expect(writer.batchesSent - before).toBeLessThanOrEqual(14);
  });

  test("after a batch of many POSTs an event goes at the end of its turn, without the wait; after one POST of many events it waits", async () => {
    await Promise.all(Array.from({ length: 20 }, (_, i) => writer.append("dev-full", [ev(`f${i}`)]))); // one batch of 20
    const before = writer.batchesSent;
    const next = writer.append("dev-full", [ev("g")]);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(writer.batchesSent - before).toBe(1); // on its way, not held for COMMIT_DELAY_MS
    expect(await next).toBe(1);
    // One device's backlog of 20 events in one POST is not many devices: after it, a trickle still shares commits.
    const start = writer.batchesSent;
    for (let i = 0; i < 10; i++) {
      await writer.append("dev-backlog", Array.from({ length: 20 }, (_, j) => ev(`h${i}-${j}`)));
      const first = writer.append("dev-backlog", [ev(`k${i}`)]);
      await new Promise((r) => setImmediate(r));
      const second = writer.append("dev-backlog", [ev(`l${i}`)]);
      expect(await Promise.all([first, second])).toEqual([1, 1]);
    }
    // 10 backlogs + 10 shared pairs = 20; counted by events, each pair would be two commits (30).
    expect(writer.batchesSent - start).toBeLessThanOrEqual(24);
  });

  test("an event that cannot be serialised rejects its own call; concurrent calls all commit", async () => {
    const deep: Record<string, unknown> = {};
    deep.self = deep; // JSON.stringify throws, as it does on a 100,000-deep value
    const good = Array.from({ length: 200 }, (_, i) => writer.append("dev-b", [ev(`b-${i}`)]));
    const bad = writer.append("dev-a", [ev("a-1", { deep })]);
    const more = Array.from({ length: 200 }, (_, i) => writer.append("dev-b", [ev(`c-${i}`)]));
    await expect(bad).rejects.toThrow(EventWriteError);
    expect(await Promise.all([...good, ...more])).toEqual(Array(400).fill(1));
    const db = new Database(path, { readonly: true });
    const n = db.query<{ n: number }, [string]>("SELECT count(*) AS n FROM events WHERE device_uuid = ?").get("dev-b")!.n;
    const a = db.query<{ n: number }, [string]>("SELECT count(*) AS n FROM events WHERE device_uuid = ?").get("dev-a")!.n;
    db.close();
    expect(n).toBe(400);
    expect(a).toBe(0);
  });

  test("an item the database refuses fails alone; the rest of its batch commits", async () => {
    const before = Array.from({ length: 50 }, (_, i) => writer.append("dev-y", [ev(`y-${i}`)]));
    const refused = writer.append("dev-refused", [ev("r-1")]);
    const after = Array.from({ length: 50 }, (_, i) => writer.append("dev-y", [ev(`z-${i}`)]));
    await expect(refused).rejects.toThrow("refused by trigger");
    expect(await Promise.all([...before, ...after])).toEqual(Array(100).fill(1));
    expect(await writer.append("dev-y", [ev("y-1")])).toBe(0); // a duplicate id is stored once
  });

  test("while another connection holds the write lock, events waiting beyond the bound are refused at once; the queued ones all commit once it is free", async () => {
    const MAX = 20;
    const w = new EventWriter(path, { eventQueueMax: MAX });
    const other = new Database(path);
    const settled = (p: Promise<number>) => p.then((n) => ({ n }), (err: unknown) => ({ err }));
    try {
      expect(await w.append("dev-q", [ev("q-warm")])).toBe(1); // the thread is up
      other.exec("BEGIN IMMEDIATE"); // a backup or a second process: the writer's commit waits (busy_timeout, 10 s)
      const running = w.append("dev-q", [ev("q-run-1"), ev("q-run-2")]);
      await Bun.sleep(150); // sent to the thread, which waits for the lock: not counted as queued
      // 13 posts of 2, 1, 2, 1 ... events: 20, the bound, all queued.
      const calls = Array.from({ length: 13 }, (_, i) => (i % 2 ? [ev(`q-${i}-a`)] : [ev(`q-${i}-a`), ev(`q-${i}-b`)]));
      expect(calls.flat().length).toBe(MAX);
      const results = calls.map((events) => settled(w.append("dev-q", events)));
      expect(await Promise.race([Promise.any([running, ...results]).then(() => "answered"), Bun.sleep(300).then(() => "waiting")])).toBe("waiting");
      // Past the bound: a post of 1 event and one of 2, refused at once with the error app.ts answers 503 with Retry-After.
      const refused = { outcome: "EventQueueFullError", retryAfterSeconds: STORE_RETRY_AFTER_S, atOnce: true };
      expect(await refusals([() => w.append("dev-q", [ev("q-over-1")]), () => w.append("dev-r", [ev("q-over-2"), ev("q-over-3")])])).toEqual([refused, refused]);
      other.exec("COMMIT");
      expect(await running).toBe(2);
      expect((await Promise.all(results)).map((r) => ("n" in r ? r.n : r.err))).toEqual(calls.map((c) => c.length));
      const db = new Database(path, { readonly: true });
      const ids = db.query<{ id: string }, [string]>("SELECT id FROM events WHERE device_uuid = ? ORDER BY id").all("dev-q").map((r) => r.id);
      const overStored = db.query<{ n: number }, []>("SELECT count(*) AS n FROM events WHERE id LIKE 'q-over-%'").get()!.n;
      db.close();
      expect(ids).toEqual(["q-warm", "q-run-1", "q-run-2", ...calls.flat().map((e) => e.id)].sort());
      expect(overStored).toBe(0);
      expect(await w.append("dev-q", [ev("q-over-1")])).toBe(1); // drained: the refused device is taken when it retries
    } finally {
      other.close();
      await w.close();
    }
  }, 20_000);

  test("the hang watchdog leaves alone a thread that only waits for the write lock, and a thread kept busy past the bound by calls each answered in time", async () => {
    const lines: string[] = [];
    const w = new EventWriter(path, { watchdogMs: 3000, log: (l) => lines.push(l) });
    const other = new Database(path);
    try {
      expect(await w.append("dev-w", [ev("w-0")])).toBe(1); // the thread is up
      // Another connection (a backup, a second process) holds the write lock for 1 s, under the bound.
      other.exec("BEGIN IMMEDIATE");
      const waiting = w.append("dev-w", [ev("w-1")]);
      await Bun.sleep(1000);
      other.exec("COMMIT");
      expect(await waiting).toBe(1);
      // Then calls keep it busy for longer than the bound, each answered within it: progress, not a hang.
      const started = performance.now();
      for (let i = 2; performance.now() - started < 4000; i++) {
        other.exec("BEGIN IMMEDIATE");
        const next = w.append("dev-w", [ev(`w-${i}`)]);
        await Bun.sleep(200);
        other.exec("COMMIT");
        expect(await next).toBe(1);
      }
      expect(lines).toEqual([]); // never counted as hung, never restarted
    } finally {
      other.close();
      await w.close();
    }
  }, 30_000);
});
