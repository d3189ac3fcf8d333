/**
 * Durable event inserts for SqliteStore without stalling the event loop: a
 * synchronous=FULL commit costs an fsync (about 2 ms on a VM disk), and
 * bun:sqlite is synchronous, so commits run on a worker thread with its own
 * connection. While one batch commits, new events queue up and go in the
 * next transaction (group commit). Each caller's promise resolves only after
 * the commit holding its events returned.
 *
 * The other writes of the check-in path run here too: the sightings flush
 * (last_seen, tags, target, apps; a transaction per call, between event
 * batches) and the leader lease. On the main thread they waited for SQLite's
 * one write lock whenever this worker held it, and SQLite's busy handler
 * waits by sleeping, so the whole event loop slept 1-26 ms at a time.
 *
 * The worker is built from a string (a Blob URL) so `bun build --compile`
 * needs no extra entry point.
 *
 * @module
 */
import type { DeviceEvent } from "../../lib/api/index.ts";

/**
 * One sighting: last_seen, tags, current target and apps of a device. Tags from a check-in
 * count only for devices whose registration token let them choose.
 */
export const SIGHTING_SQL = `UPDATE devices SET last_seen = ?1,
  tags = CASE WHEN tags_from_device = 1 THEN coalesce(?2, tags) ELSE tags END,
  current_target = coalesce(?3, current_target), apps = coalesce(?4, apps)
WHERE uuid = ?5`;

/** Insert, or take over an expired lease, or renew our own, in one statement; RETURNING tells who holds it. */
export const LEASE_SQL = `INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3)
  ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
  WHERE leases.holder = excluded.holder OR leases.expires_at < ?4
  RETURNING holder`;

/** A sighting as the parameters of SIGHTING_SQL. */
export type SightingParams = [at: string, tags: string | null, target: string | null, apps: string | null, uuid: string];

const WORKER_SOURCE = `
import { Database } from "bun:sqlite";
const SIGHTING_SQL = ${JSON.stringify(SIGHTING_SQL)};
const LEASE_SQL = ${JSON.stringify(LEASE_SQL)};
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
    if (m.sightings) {
      const q = db.query(SIGHTING_SQL);
      db.transaction(() => { for (const r of m.sightings) q.run(...r); })();
      postMessage({ id: m.id, counts: [] });
      return;
    }
    if (m.lease) {
      // The clock is read here, when the statement runs: a lease answered late still lasts ttl from now.
      const now = m.lease.now ?? Date.now();
      const row = db.query(LEASE_SQL).get(m.lease.name, m.lease.holder, new Date(now + m.lease.ttlMs).toISOString(), new Date(now).toISOString());
      postMessage({ id: m.id, counts: [row && row.holder === m.lease.holder ? 1 : 0] });
      return;
    }
    if (m.release) {
      db.query("DELETE FROM leases WHERE name = ? AND holder = ?").run(m.release.name, m.release.holder);
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
  readonly #waiting = new Map<number, { what: string; resolve(reply: Reply): void; reject(e: unknown): void }>();
  #ready: Promise<unknown>;
  #closed = false;
  /** Sightings and lease calls not yet answered. */
  #others = 0;

  constructor(path: string) {
    this.#worker = new Worker(URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "application/javascript" })));
    this.#worker.onmessage = (e: MessageEvent<Reply>) => {
      const w = this.#waiting.get(e.data.id);
      this.#waiting.delete(e.data.id);
      if (e.data.error !== undefined) w?.reject(new EventWriteError(`${w?.what}: ${e.data.error}`));
      else w?.resolve(e.data);
    };
    // A worker that dies would leave every caller waiting: fail them instead.
    this.#worker.onerror = (e) => {
      for (const w of this.#waiting.values()) w.reject(new EventWriteError(`${w.what}: the writer thread failed: ${e.message}`));
      this.#waiting.clear();
    };
    this.#worker.unref();
    this.#ready = this.#call({ open: path });
  }

  #call(msg: object, what = "Cannot store events"): Promise<Reply> {
    const id = ++this.#seq;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { what, resolve, reject });
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

  /**
   * Another write on this thread's connection, after the open and, on the worker, in the order
   * sent: the main thread never waits for SQLite's write lock for it.
   */
  async #other(msg: object, what: string): Promise<Reply> {
    if (this.#closed) throw new EventWriteError(`${what}: the store is closed`);
    this.#others++;
    try {
      await this.#ready;
      return await this.#call(msg, what);
    } finally {
      this.#others--;
    }
  }

  /** Applies a sightings flush in one transaction of its own (an event batch never waits for more than one). */
  async recordSightings(rows: SightingParams[]): Promise<void> {
    if (rows.length) await this.#other({ sightings: rows }, "Cannot record sightings");
  }

  /** Store.tryLease on the writer's connection; `now` (ms) for tests, else the clock when it runs. */
  async tryLease(name: string, holder: string, ttlMs: number, now?: number): Promise<boolean> {
    const reply = await this.#other({ lease: { name, holder, ttlMs, now } }, `Cannot take the lease ${name}`);
    return reply.counts[0] === 1;
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    await this.#other({ release: { name, holder } }, `Cannot release the lease ${name}`);
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
    while (this.#inFlight || this.#queue.length || this.#others) await Bun.sleep(1);
    await this.#call({ close: true }).catch(() => {});
    this.#worker.terminate();
  }
}
