/**
 * One SQLite writer thread: a Bun worker with its own connection to the database file, answering
 * numbered messages in the order sent. EventWriter (./_event-writer.ts) decides what to send and
 * starts a new thread when one dies; this file knows the worker's statements and how a death
 * looks from the main thread (an uncaught error, an exit, a terminate, or a hang).
 *
 * A hang (the thread is alive but never answers: a bug looping, a wait that never ends) would
 * leave every write waiting for ever, as nothing else ends the call. A watchdog notices it: when
 * the call the thread is on (the oldest unanswered one) has gone `watchdogMs` without an answer,
 * counted from when it was sent or from the previous answer, whichever is later (a backlog of
 * calls each answered in time is progress, not a hang), the worker is terminated and the thread
 * counts as dead: its calls fail at once and EventWriter restarts it as after a crash.
 *
 * The bound, {@link WATCHDOG_MS} = 30 s: the longest a legitimate call goes without an answer is
 * a wait for SQLite's write lock, which the connection's busy_timeout ends after 10 s (SQLite then
 * answers SQLITE_BUSY, an answer like any other), plus the write itself, milliseconds, at worst a
 * few seconds for a WAL checkpoint on a slow disk. Three times the lock wait leaves room for that
 * and for a starved CPU; a shorter bound would risk killing a thread that only waits for a lock,
 * taken by a backup or a second process, and the write it kills is lost and retried anyway.
 * fioup gives up on a request after 30 s and retries it, so what the bound shortens is the wait of
 * the writes queued behind the hung one (events, sightings, the signer lease), not the device's.
 *
 * Terminating stops JavaScript anywhere, and a wait in Atomics; the connection is closed with the
 * thread, and its open transaction rolled back, so the write lock it held is free for the new one.
 * A thread stuck inside SQLite's own C code (an fsync on a dead disk) cannot be stopped that way:
 * it is abandoned, still holding its lock, and the new thread's writes fail with SQLITE_BUSY
 * after their 10 s (an error, not a hang) until the disk answers.
 *
 * Messages both ways are JSON strings: a structured clone of an object graph costs per string
 * in it (an event batch is many small strings), a string is copied once. The worker is unref'd
 * while no call waits (an idle store does not keep the process alive) and ref'd while one does:
 * a process with no other handle, waiting on an unref'd worker, spins its main thread instead
 * of sleeping (Bun 1.4; hundreds of microseconds of CPU per millisecond of wait).
 *
 * The worker is built from a string (a Blob URL) so `bun build --compile` needs no extra entry
 * point.
 *
 * @module
 */
import { StoreUnavailableError } from "./types.ts";

/**
 * One sighting: last_seen, tags, current target and apps of a device. Tags from a check-in
 * count only for devices whose registration token let them choose; every device's are kept as
 * the tags it reports following (reported_tags, migration 39).
 */
export const SIGHTING_SQL = `UPDATE devices SET last_seen = ?1,
  tags = CASE WHEN tags_from_device = 1 THEN coalesce(?2, tags) ELSE tags END, reported_tags = coalesce(?2, reported_tags),
  current_target = coalesce(?3, current_target), apps = coalesce(?4, apps)
WHERE uuid = ?5`;

/**
 * Insert, or take over an expired lease, or renew our own, in one statement; RETURNING tells who
 * holds it. Parameters (name, holder, ttl ms). Timed by the database's clock when it runs, as on
 * PostgreSQL (one host here, but one form for both).
 */
export const LEASE_SQL = `INSERT INTO leases (name, holder, expires_at)
  VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', (?3 / 1000.0) || ' seconds'))
  ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
  WHERE leases.holder = excluded.holder OR leases.expires_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
  RETURNING holder`;

export const RELEASE_LEASE_SQL = "DELETE FROM leases WHERE name = ?1 AND holder = ?2";

/** A device's apps-states: parameters (uuid, body, updated_at). */
export const APPS_STATES_SQL = `INSERT INTO apps_states (device_uuid, body, updated_at) VALUES (?1, ?2, ?3)
  ON CONFLICT (device_uuid) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at`;

/** One kind of a device's inventory: parameters (uuid, kind, body, updated_at). */
export const SYSTEM_INFO_SQL = `INSERT INTO system_info (device_uuid, kind, body, updated_at) VALUES (?1, ?2, ?3, ?4)
  ON CONFLICT (device_uuid, kind) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at`;

/** One event: parameters (id, uuid, received_at, body); a repeated (device, id) is stored once. */
export const EVENT_SQL = "INSERT INTO events (id, device_uuid, received_at, body) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING";

/**
 * Up to ?2 of the oldest events, those received before ?1: the oldest ?2 by seq not received after
 * ?3 (now) are looked at and the old ones among them deleted, so a call with nothing to remove reads
 * ?2 rows, not the table (received_at has no index, and one per event would cost every insert;
 * events arrive in seq order, near enough in time order too). Not `received_at < ?1` in the window:
 * with fewer than ?2 old events that reads every row. Events stamped in the future (the gateway's
 * clock was wrong forward when they came) are passed over, read but not counted: among the oldest by
 * seq they took the window's places, so each call removed fewer or, ?2 of them in a row, none ever
 * again. They go once their time has passed like any other.
 */
export const PRUNE_EVENTS_SQL =
  "DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE received_at <= ?3 ORDER BY seq LIMIT ?2) AND received_at < ?1";

/** The statements a `run` message may name (the worker holds their text; messages carry only names and rows). */
const STATEMENTS = {
  sighting: SIGHTING_SQL,
  pruneEvents: PRUNE_EVENTS_SQL,
  releaseLease: RELEASE_LEASE_SQL,
  appsStates: APPS_STATES_SQL,
  systemInfo: SYSTEM_INFO_SQL,
};
export type StatementName = keyof typeof STATEMENTS;
export type SqlValue = string | number | null;

/** A sighting as the parameters of SIGHTING_SQL. */
export type SightingParams = [at: string, tags: string | null, target: string | null, apps: string | null, uuid: string];

/** One caller's events in a batch, each serialised when it was queued. */
export interface EventItem {
  uuid: string;
  ids: string[];
  bodies: string[];
}

/** How long the call a writer thread is on may go without an answer before the thread counts as hung (module comment). */
export const WATCHDOG_MS = 30_000;

/**
 * Where the worker crashes for a test (see the fault point in ./_event-writer.ts): on receiving
 * a batch, before it commits, or after it committed and before it answers; or it exits (code 70)
 * on receiving it, without an error; or it hangs for ever (never answers, never dies) inside the
 * batch's transaction, holding the write lock, or after the commit, before answering.
 */
export type CrashPoint = "before-commit" | "after-commit" | "exit" | "hang-before-commit" | "hang-after-commit";

export type WriterMessage =
  | { op: "open"; path: string }
  /** `slowMs`: tests only, the thread sleeps that long after the write (a slow disk, for the watchdog's tests). */
  | { op: "run"; sql: StatementName; rows: SqlValue[][]; slowMs?: number }
  | { op: "lease"; name: string; holder: string; ttlMs: number }
  | { op: "events"; items: EventItem[]; now: string; crash?: CrashPoint }
  | { op: "close" };

export interface Reply {
  id: number;
  counts: number[];
  /** Per item: why it was not stored (null or absent: stored). */
  errors?: (string | null | undefined)[];
  error?: string;
  /** The error's code (SQLITE_FULL, SQLITE_BUSY...), when it had one. */
  code?: string;
}

const WORKER_SOURCE = `
import { Database } from "bun:sqlite";
const STATEMENTS = ${JSON.stringify(STATEMENTS)};
const LEASE_SQL = ${JSON.stringify(LEASE_SQL)};
const EVENT_SQL = ${JSON.stringify(EVENT_SQL)};
let db;
// The fault points writer-hang*: blocks the thread for ever, without using the CPU.
const hang = () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
const handlers = {
  open(m) {
    db = new Database(m.path);
    db.exec("PRAGMA busy_timeout = 10000");
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = FULL");
    db.exec("PRAGMA foreign_keys = ON"); // as on the main connection
    return [];
  },
  // Each row of a named statement, all in one transaction (a sightings flush; one apps-states); the rows it changed.
  run(m) {
    const q = db.query(STATEMENTS[m.sql]);
    let n = 0;
    db.transaction(() => { for (const r of m.rows) n += q.run(...r).changes; })();
    if (m.slowMs) Bun.sleepSync(m.slowMs);
    return [n];
  },
  lease(m) {
    // The clock is read when the statement runs: a lease answered late still lasts ttl from then.
    const row = db.query(LEASE_SQL).get(m.name, m.holder, m.ttlMs);
    return [row && row.holder === m.holder ? 1 : 0];
  },
  close() {
    db?.close();
    db = undefined;
    return [];
  },
};
self.onmessage = (e) => {
  const m = JSON.parse(e.data);
  if (m.crash === "exit") process.exit(70); // the fault point writer-exit
  if (m.crash === "before-commit") throw new Error("fault point writer-crash: the writer thread crashed before committing");
  let reply;
  try {
    if (m.op === "events") reply = events(m);
    else reply = { counts: handlers[m.op](m) };
  } catch (err) {
    // The code too: SQLITE_FULL is the disk, which the gateway says apart (gateway/disk-full.ts).
    reply = { error: String((err && err.message) || err), code: err && typeof err.code === "string" ? err.code : undefined };
  }
  if (m.crash === "after-commit") throw new Error("fault point writer-crash-after-commit: the writer thread crashed after committing");
  if (m.crash === "hang-after-commit") hang();
  postMessage(JSON.stringify({ id: m.id, ...reply }));
};
// One transaction for the batch. Tried first without a savepoint per caller's item: a repeated
// id is no error (ON CONFLICT DO NOTHING), so a batch almost always commits whole, and the two
// statements of a savepoint per item were about a quarter of the thread's CPU per event (13 of
// 52 µs user in batches of 25, 100,000 devices). If anything fails, the batch is rolled back and
// done again with a savepoint per item: a failing item is rolled back and reported alone, the
// others commit.
function events(m) {
  const insert = db.query(EVENT_SQL);
  const store = (it) => {
    let n = 0;
    for (let i = 0; i < it.ids.length; i++) n += insert.run(it.ids[i], it.uuid, m.now, it.bodies[i]).changes;
    return n;
  };
  try {
    return { counts: db.transaction(() => {
      const counts = m.items.map(store);
      if (m.crash === "hang-before-commit") hang();
      return counts;
    })() };
  } catch (err) {
    // Rolled back. What fails the whole database (the write lock not had within busy_timeout, a
    // full disk, an I/O error) fails the batch now: item by item it would wait again per item.
    // Anything else may be one item's: each item again, alone.
    if (/^SQLITE_(BUSY|LOCKED|IOERR|FULL|CORRUPT|NOMEM|READONLY|CANTOPEN|NOTADB)/.test(String((err && err.code) || ""))) throw err;
  }
  const one = db.transaction(store);
  let errors;
  const counts = db.transaction(() =>
    m.items.map((it, i) => {
      try {
        return one(it);
      } catch (err) {
        (errors ??= [])[i] = String((err && err.message) || err);
        return 0;
      }
    }),
  )();
  return errors ? { counts, errors } : { counts };
}
`;

/** A write the writer thread refused, or that could not be sent. */
export class EventWriteError extends Error {
  override name = "EventWriteError";
  constructor(
    message: string,
    /** SQLite's code for why the write failed (SQLITE_FULL: the disk is full), when there was one. */
    readonly code?: string,
  ) {
    super(message);
  }
}

/**
 * The writer thread stopped (crashed, exited or was terminated) before answering, or is being
 * restarted: the write may or may not have committed, and retrying it is safe (events are
 * deduplicated by id; the other writes are upserts).
 */
export class WriterUnavailableError extends StoreUnavailableError {
  override name = "WriterUnavailableError";
  constructor(what: string, reason: string) {
    super(`${what}: the SQLite writer thread is unavailable (${reason}); retry`);
  }
}

/** The line that names the error in Bun's worker error message (which also quotes the source). */
function errorLine(message: string | undefined): string {
  if (!message) return "an uncaught error";
  return /^error: (.*)$/m.exec(message)?.[1] ?? message.split("\n")[0]!;
}

/**
 * One worker and its connection. `onDeath` is called once if the worker stops without
 * {@link WriterThread.stop} (its pending calls are rejected first), or hangs: its call goes
 * `watchdogMs` without an answer (default {@link WATCHDOG_MS}; see the module comment).
 */
export class WriterThread {
  readonly #worker: Worker;
  /** In the order sent, which is the order answered: the first is the call the thread is on. */
  readonly #waiting = new Map<number, { what: string; sentAt: number; resolve(reply: Reply): void; reject(e: unknown): void }>();
  #seq = 0;
  #dead: string | undefined;
  readonly #onDeath: (reason: string) => void;
  readonly #watchdogMs: number;
  readonly #watchdog: Timer;
  /** When the last answer came (performance.now()). */
  #answeredAt = performance.now();

  constructor(path: string, onDeath: (reason: string) => void, watchdogMs = WATCHDOG_MS) {
    this.#onDeath = onDeath;
    this.#watchdogMs = watchdogMs;
    this.#worker = new Worker(URL.createObjectURL(new Blob([WORKER_SOURCE], { type: "application/javascript" })));
    this.#worker.onmessage = (e: MessageEvent<string>) => {
      this.#answeredAt = performance.now();
      const reply = JSON.parse(e.data) as Reply;
      const w = this.#waiting.get(reply.id);
      this.#waiting.delete(reply.id);
      if (!this.#waiting.size) this.#worker.unref();
      if (reply.error !== undefined) w?.reject(new EventWriteError(`${w.what}: ${reply.error}`, reply.code));
      else w?.resolve(reply);
    };
    // Bun reports an uncaught error, then closes the worker; an exit or a terminate only closes it.
    this.#worker.onerror = (e) => this.#die(errorLine(e.message));
    this.#worker.addEventListener("close", (e) => this.#die(`it exited with code ${(e as CloseEvent).code}`));
    this.#worker.unref();
    this.#watchdog = setInterval(() => this.#check(), Math.max(10, Math.min(1000, watchdogMs / 4)));
    this.#watchdog.unref();
    // Messages are handled in order, so nothing waits for the open; a failed open stops the thread.
    this.call({ op: "open", path }, "Cannot open the database on the writer thread").catch((e: Error) => this.#die(e.message));
  }

  call(msg: WriterMessage, what: string): Promise<Reply> {
    if (this.#dead !== undefined) return Promise.reject(new WriterUnavailableError(what, this.#dead));
    const id = ++this.#seq;
    return new Promise((resolve, reject) => {
      if (!this.#waiting.size) this.#worker.ref();
      this.#waiting.set(id, { what, sentAt: performance.now(), resolve, reject });
      this.#worker.postMessage(JSON.stringify({ ...msg, id }));
    });
  }

  /** Closes the connection and ends the worker; not a death. */
  async stop() {
    if (this.#dead !== undefined) return;
    await this.call({ op: "close" }, "Cannot close the writer thread's database").catch(() => {});
    this.#dead = "the store is closed";
    clearInterval(this.#watchdog);
    this.#worker.terminate();
  }

  /** The watchdog: the call the thread is on went `watchdogMs` without an answer (since it was sent, or since the previous answer). */
  #check() {
    const oldest = this.#waiting.values().next().value;
    if (!oldest) return;
    const silent = performance.now() - Math.max(oldest.sentAt, this.#answeredAt);
    if (silent > this.#watchdogMs) this.#die(`it did not answer for ${(silent / 1000).toFixed(1)} s (hung) and was terminated`);
  }

  #die(reason: string) {
    if (this.#dead !== undefined) return;
    this.#dead = reason;
    clearInterval(this.#watchdog);
    this.#worker.terminate(); // after an uncaught error its state is unknown: never reuse it
    for (const w of this.#waiting.values()) w.reject(new WriterUnavailableError(w.what, `it stopped: ${reason}`));
    this.#waiting.clear();
    this.#onDeath(reason);
  }
}
