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
      db.exec("PRAGMA busy_timeout = 10000");
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA synchronous = FULL");
      insert = db.query("INSERT INTO events (id, device_uuid, received_at, body) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING");
      postMessage({ id: m.id, counts: [] });
      return;
    }
    if (m.close) {
      db?.close();
      postMessage({ id: m.id, counts: [] });
      return;
    }
    // One transaction for the batch, a savepoint per caller's item: a failing item is rolled back
    // and reported alone, the others commit.
    const one = db.transaction((it) => {
      let n = 0;
      for (let i = 0; i < it.ids.length; i++) n += insert.run(it.ids[i], it.uuid, m.now, it.bodies[i]).changes;
      return n;
    });
    const errors = [];
    const counts = db.transaction(() =>
      m.items.map((it, i) => {
        try {
          return one(it);
        } catch (err) {
          errors[i] = String((err && err.message) || err);
          return 0;
        }
      }),
    )();
    postMessage({ id: m.id, counts, errors });
  } catch (err) {
    postMessage({ id: m.id, error: String(err && err.message || err) });
  }
};
`;

interface Pending {
  uuid: string;
  ids: string[];
  /** Each event serialised when it was queued. */
  bodies: string[];
  resolve(n: number): void;
  reject(e: unknown): void;
}

interface Reply {
  id: number;
  counts: number[];
  /** Per item: why it was not stored (absent: stored). */
  errors?: (string | undefined)[];
  error?: string;
}

export class EventWriteError extends Error {
  override name = "EventWriteError";
}

export class EventWriter {
  readonly #worker: Worker;
  #queue: Pending[] = [];
  #inFlight = false;
  #seq = 0;
  readonly #waiting = new Map<number, { resolve(reply: Reply): void; reject(e: unknown): void }>();
  #ready: Promise<unknown>;
  #closed = false;

  constructor(path: string) {
    this.#worker = new Worker(URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "application/javascript" })));
    this.#worker.onmessage = (e: MessageEvent<Reply>) => {
      const w = this.#waiting.get(e.data.id);
      this.#waiting.delete(e.data.id);
      if (e.data.error !== undefined) w?.reject(new EventWriteError(`Cannot store events: ${e.data.error}`));
      else w?.resolve(e.data);
    };
    // A worker that dies would leave every caller waiting: fail them instead.
    this.#worker.onerror = (e) => {
      const err = new EventWriteError(`Cannot store events: the writer thread failed: ${e.message}`);
      for (const w of this.#waiting.values()) w.reject(err);
      this.#waiting.clear();
    };
    this.#worker.unref();
    this.#ready = this.#call({ open: path });
  }

  #call(msg: object): Promise<Reply> {
    const id = ++this.#seq;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#worker.postMessage({ ...msg, id });
    });
  }

  /**
   * Queues `events` for the next commit; resolves with how many were new once it committed.
   * Each event is serialised here, before it is queued, so an event that cannot be (too deep,
   * a cycle) rejects this call alone.
   */
  append(uuid: string, events: DeviceEvent[]): Promise<number> {
    if (this.#closed) return Promise.reject(new EventWriteError("Cannot store events: the store is closed"));
    let bodies: string[];
    try {
      bodies = events.map((e) => JSON.stringify(e));
    } catch (err) {
      return Promise.reject(new EventWriteError(`Cannot store events: ${(err as Error).message}`));
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ uuid, ids: events.map((e) => e.id), bodies, resolve, reject });
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
        const items = batch.map((p) => ({ uuid: p.uuid, ids: p.ids, bodies: p.bodies }));
        try {
          const reply = await this.#call({ items, now: new Date().toISOString() });
          batch.forEach((p, i) => {
            const error = reply.errors?.[i];
            if (error !== undefined) p.reject(new EventWriteError(`Cannot store events: ${error}`));
            else p.resolve(reply.counts[i] ?? 0);
          });
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
