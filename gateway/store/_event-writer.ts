/**
 * Durable event inserts for SqliteStore without stalling the event loop: a
 * synchronous=FULL commit costs an fsync (about 2 ms on a VM disk), and
 * bun:sqlite is synchronous, so commits run on a worker thread with its own
 * connection. While one batch commits, new events queue up and go in the
 * next transaction (group commit). Each caller's promise resolves only after
 * the commit holding its events returned.
 *
 * The worker is built from a string (a Blob URL) so `bun build --compile`
 * needs no extra entry point.
 *
 * @module
 */
import type { DeviceEvent } from "../../lib/api/index.ts";

const WORKER_SOURCE = `
import { Database } from "bun:sqlite";
let db, insert;
self.onmessage = (e) => {
  const m = e.data;
  try {
    if (m.open) {
      db = new Database(m.open);
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA synchronous = FULL");
      db.exec("PRAGMA busy_timeout = 10000");
      insert = db.query("INSERT INTO events (id, device_uuid, received_at, body) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING");
      postMessage({ id: m.id, counts: [] });
      return;
    }
    if (m.close) {
      db?.close();
      postMessage({ id: m.id, counts: [] });
      return;
    }
    const counts = db.transaction(() =>
      m.items.map((it) => {
        let n = 0;
        for (let i = 0; i < it.ids.length; i++) n += insert.run(it.ids[i], it.uuid, m.now, it.bodies[i]).changes;
        return n;
      }),
    )();
    postMessage({ id: m.id, counts });
  } catch (err) {
    postMessage({ id: m.id, error: String(err && err.message || err) });
  }
};
`;

interface Pending {
  uuid: string;
  events: DeviceEvent[];
  resolve(n: number): void;
  reject(e: unknown): void;
}

export class EventWriteError extends Error {
  override name = "EventWriteError";
}

export class EventWriter {
  readonly #worker: Worker;
  #queue: Pending[] = [];
  #inFlight = false;
  #seq = 0;
  readonly #waiting = new Map<number, { resolve(counts: number[]): void; reject(e: unknown): void }>();
  #ready: Promise<unknown>;
  #closed = false;

  constructor(path: string) {
    this.#worker = new Worker(URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "application/javascript" })));
    this.#worker.onmessage = (e: MessageEvent<{ id: number; counts: number[]; error?: string }>) => {
      const w = this.#waiting.get(e.data.id);
      this.#waiting.delete(e.data.id);
      if (e.data.error !== undefined) w?.reject(new EventWriteError(`Cannot store events: ${e.data.error}`));
      else w?.resolve(e.data.counts);
    };
    this.#worker.unref();
    this.#ready = this.#call({ open: path });
  }

  #call(msg: object): Promise<number[]> {
    const id = ++this.#seq;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#worker.postMessage({ ...msg, id });
    });
  }

  append(uuid: string, events: DeviceEvent[]): Promise<number> {
    if (this.#closed) return Promise.reject(new EventWriteError("Cannot store events: the store is closed"));
    return new Promise((resolve, reject) => {
      this.#queue.push({ uuid, events, resolve, reject });
      if (!this.#inFlight) void this.#pump();
    });
  }

  /** Sends everything queued as one transaction; repeats while more arrived meanwhile. */
  async #pump() {
    this.#inFlight = true;
    try {
      await this.#ready;
      while (this.#queue.length) {
        const batch = this.#queue;
        this.#queue = [];
        const items = batch.map((p) => ({ uuid: p.uuid, ids: p.events.map((e) => e.id), bodies: p.events.map((e) => JSON.stringify(e)) }));
        try {
          const counts = await this.#call({ items, now: new Date().toISOString() });
          batch.forEach((p, i) => p.resolve(counts[i] ?? 0));
        } catch (err) {
          for (const p of batch) p.reject(err);
        }
      }
    } catch (err) {
      for (const p of this.#queue.splice(0)) p.reject(err);
    } finally {
      this.#inFlight = false;
    }
  }

  /** Waits for queued events to commit, then closes the worker's connection. */
  async close() {
    this.#closed = true;
    while (this.#inFlight || this.#queue.length) await Bun.sleep(1);
    await this.#call({ close: true }).catch(() => {});
    this.#worker.terminate();
  }
}
