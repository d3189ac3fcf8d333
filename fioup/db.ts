/**
 * The device database (bun:sqlite, WAL, `<storage.path>/fioup.db`): updates
 * and their steps, the event queue, bad targets, the current target and the
 * last apps-states sent. Every write is a single transaction, so a power cut
 * leaves either the old or the new row. Writes that belong together go through
 * {@link DeviceDb.transaction} (one commit); a kill point reached inside it fires only once the
 * outermost transaction has committed, so `state:<state>` always finds that state on disk.
 *
 * @module
 */
import { Database } from "bun:sqlite";
import { accessSync, constants, statfsSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { sizeText } from "../lib/cli/bytes.ts";
import { spaceOf } from "../lib/fs/free.ts";
import { isNoSpace } from "../lib/fs/why.ts";
import { faultPoint } from "./fault.ts";
import { droppedEventsNote, EVENTS_DROPPED, type DroppedEvents } from "./events/event.ts";
import { targetContent, type DeviceEvent, type Target } from "../lib/api/index.ts";
import type { BadTargets } from "../lib/tuf/select-target.ts";
import type { UpdatePlan } from "./update/plan.ts";
import { ended, type StepName, type UpdateState } from "./update/states.ts";

export interface UpdateRow {
  id: string;
  fromTarget: string | null;
  toTarget: string;
  version: string;
  target: Target;
  state: UpdateState;
  /** Named version given by the user (allows a downgrade). */
  explicit: boolean;
  /** Init's result, as saved: read it with planOf() (fioup/update/plan.ts), which checks it. */
  plan: unknown;
  bytesTotal: number;
  bytesFetched: number;
  error: string | null;
  createdAt: string;
  updatedAt: string;
  steps: { step: string; at: string }[];
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS updates (
  id TEXT PRIMARY KEY, from_target TEXT, to_target TEXT NOT NULL, version TEXT NOT NULL,
  target_json TEXT NOT NULL, state TEXT NOT NULL, explicit INTEGER NOT NULL DEFAULT 0,
  plan_json TEXT, bytes_total INTEGER NOT NULL DEFAULT 0, bytes_fetched INTEGER NOT NULL DEFAULT 0,
  error TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS update_steps (
  update_id TEXT NOT NULL, step TEXT NOT NULL, at TEXT NOT NULL, PRIMARY KEY (update_id, step));
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bad_targets (name TEXT PRIMARY KEY, reason TEXT, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
`;

/**
 * The device database cannot be opened (or, `verb` "write", written): it names the file, and for a
 * file that is not (or no longer) an SQLite database, what moving it aside costs, since nothing
 * fioup does fixes that.
 */
export class DeviceDbError extends Error {
  override name = "DeviceDbError";
  constructor(path: string, cause: unknown, why?: string, verb: "open" | "write" = "open") {
    const said = String((cause as Error)?.message ?? cause);
    const corrupt = /not a database|malformed|corrupt/i.test(said);
    super(
      `Cannot ${verb} the device database ${path}: ${why ?? said}` +
        (corrupt && why === undefined
          ? `. It is damaged; move it aside (mv ${path} ${path}.damaged) and fioup starts a new one: the device keeps its registration and running apps, and forgets which target it runs, its update history, queued events and bad targets`
          : ""),
      { cause },
    );
  }
}

/**
 * The file system holding fioup.db is full: SQLite cannot write, nor (in WAL mode) make or grow
 * the `-shm` and `-wal` files beside it, which it says as a bare "disk I/O error". Freeing space
 * there is the fix; `fioup status` still reads (DeviceDb's read-only open). A write refused so
 * (`verb` "write": a step's record once the disk filled) was rolled back whole: what fioup.db
 * held stays as it was, and the command run again goes on from there.
 */
export class DeviceDbFullError extends DeviceDbError {
  override name = "DeviceDbFullError";
  /** SQLite's code for a full disk, so whatever sorts errors by code (lib/fs/why.ts isNoSpace: said at once, never retried; exit 41) sorts this one so. */
  readonly code = "SQLITE_FULL";
  constructor(
    path: string,
    cause: unknown,
    /** The folder holding fioup.db, whose file system is full. */
    readonly dir: string,
    free: number,
    verb: "open" | "write" = "open",
  ) {
    const said = `the file system holding ${dir} is full (${sizeText(free)} left; SQLite said: ${String((cause as Error)?.message ?? cause)})`;
    super(
      path,
      cause,
      verb === "open"
        ? `${said}: fioup.db needs room beside it for its -wal and -shm files. Free space on it (df ${dir}), then run the command again`
        : `${said}; nothing was written, what it held stays as it was. Free space on it (df ${dir}), then run the command again`,
      verb,
    );
  }
}

/** Less room than this left where fioup.db lives reads as a full file system: WAL's index alone takes 32 KiB. */
const ROOM_FOR_WAL = 64 << 10;

/**
 * The DeviceDbError for `cause`: a DeviceDbFullError when SQLite found the disk full, or failed
 * on I/O (growing the -shm) where the file system has no room left.
 */
function openError(path: string, cause: unknown): DeviceDbError {
  const code = (cause as { code?: unknown })?.code;
  if (typeof code === "string" && code.startsWith("SQLITE_CANTOPEN") && readOnlyFs(dirname(path)))
    return new DeviceDbError(
      path,
      cause,
      `the file system holding ${dirname(path)} is read-only: fioup.db needs to write beside it (its -wal and -shm files) even to be read. Remount it read-write (mount -o remount,rw), or point storage.path at a writable folder`,
    );
  if (isNoSpace(cause) || (typeof code === "string" && code.startsWith("SQLITE_IOERR"))) {
    const dir = dirname(path);
    try {
      // root (fioup under systemd) also writes into the blocks reserved for it.
      const free = spaceOf(statfsSync(dir), { asThisProcess: true }).free;
      if (isNoSpace(cause) || free < ROOM_FOR_WAL) return new DeviceDbFullError(path, cause, dir, free);
    } catch {
      if (isNoSpace(cause)) return new DeviceDbFullError(path, cause, dir, 0);
    }
  }
  return new DeviceDbError(path, cause);
}

/** A write's error as said: a DeviceDbFullError when SQLite found the disk full, else the error itself. */
function writeError(path: string, cause: unknown): unknown {
  if (!isNoSpace(cause)) return cause;
  const dir = dirname(path);
  let free = 0;
  try {
    free = spaceOf(statfsSync(dir), { asThisProcess: true }).free;
  } catch {}
  return new DeviceDbFullError(path, cause, dir, free, "write");
}

/** Whether `dir` is on a read-only file system (EROFS): SQLite then says only "unable to open database file". */
function readOnlyFs(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EROFS";
  }
}

/** The tables, made where missing, with the columns added since. */
function createSchema(db: Database): void {
  db.exec(SCHEMA);
  // A mark records what failed, not only its name (BadTargets in lib/tuf/select-target.ts);
  // marks made before this column have none, and count by name as they did.
  if (!db.query<{ name: string }, []>("PRAGMA table_info(bad_targets)").all().some((c) => c.name === "content"))
    db.exec("ALTER TABLE bad_targets ADD COLUMN content TEXT");
}

/** True for a file there of 0 bytes (not for one that is missing or cannot be read). */
function isEmptyFile(path: string): boolean {
  try {
    return statSync(path).size === 0;
  } catch {
    return false;
  }
}

/**
 * Opens fioup.db only to read it. Where its file system is full, WAL's shared-memory index
 * (`-shm`) cannot be made or grown, so the database is then read with exclusive locking, where
 * SQLite keeps that index in memory, and `query_only` (nothing is written; the lock lasts as long
 * as the command, a status).
 */
function openForReading(path: string): Database {
  let db: Database | undefined;
  try {
    db = new Database(path, { readonly: true, strict: true });
    db.exec("PRAGMA busy_timeout = 5000");
    db.query("SELECT 1 FROM updates LIMIT 1").get(); // the first read maps the -shm: where a full disk shows
    return db;
  } catch (cause) {
    db?.close();
    if (!(openError(path, cause) instanceof DeviceDbFullError)) throw cause;
    const full = new Database(path, { strict: true });
    try {
      full.exec("PRAGMA busy_timeout = 5000; PRAGMA locking_mode = EXCLUSIVE; PRAGMA query_only = 1;");
      full.query("SELECT 1 FROM updates LIMIT 1").get();
      return full;
    } catch (e) {
      full.close();
      throw e;
    }
  }
}

/**
 * The most the event queue holds while the gateway is out of reach: 8 MiB of queued events (their
 * JSON). Bytes, not a count, because the disk is what it protects: an event is 0.3-1 KiB, so this
 * is some 10,000-25,000 of them (months offline, hundreds of updates), but one carrying a long
 * error runs to 16 KiB (makeEvent cuts details there) and 10,000 of those would take 160 MB. Not
 * a setting, as nothing of the queue is. Past it the oldest go first (DeviceDb.enqueueEvents).
 */
export const MAX_QUEUED_EVENT_BYTES = 8 << 20;

/**
 * What a full queue is cut down to: 1 MiB under the bound, so the next thousand or so events queue
 * without reading the whole queue again (and the note of what was dropped fits).
 */
const QUEUE_CUT_TO = MAX_QUEUED_EVENT_BYTES - (1 << 20);

/** The kv key of a record kept for update `updateId` while it runs: dropped when it ends ({@link DeviceDb.setState}). */
export const updateKey = (what: string, updateId: string) => `${what}:${updateId}`;

/** The kv key of a target's last permanent failure (DeviceDb.notePermanentFailure). */
const permanentFailureKey = (target: string) => `permanent-failure:${target}`;

interface RawUpdate {
  id: string;
  from_target: string | null;
  to_target: string;
  version: string;
  target_json: string;
  state: string;
  explicit: number;
  plan_json: string | null;
  bytes_total: number;
  bytes_fetched: number;
  error: string | null;
  created_at: string;
  updated_at: string;
}

export class DeviceDb {
  readonly db: Database;
  private readonly path: string;
  /** How deep in {@link transaction} this is, and the kill points reached there, fired after the outermost commit. */
  private depth = 0;
  private deferredPoints: string[] = [];

  /**
   * Opens (or creates) fioup.db at `path`; with `readOnly` (`fioup status`) an existing one only to
   * read it, which works on a full disk too.
   *
   * A file of 0 bytes (a power cut as it was first made, or a damaged file system) holds nothing:
   * it is started afresh (read-only: read as empty), with a line through `warn` (default: stderr,
   * so `--format json` output stays clean) saying what the device no longer knows, not silently.
   *
   * @throws {DeviceDbError} Naming the file and why; a DeviceDbFullError where its file system is full.
   */
  constructor(path: string, opts: { readOnly?: boolean; warn?: (line: string) => void } = {}) {
    this.path = path;
    const warn = opts.warn ?? ((line: string) => void process.stderr.write(`warning: ${line}\n`));
    if (isEmptyFile(path)) {
      warn(
        opts.readOnly
          ? `${path} is empty (0 bytes): no update is recorded; the next fioup check or update starts it afresh`
          : `${path} was empty (0 bytes: a power cut as it was made, or a damaged file system): it starts afresh, and the updates recorded before, the events not yet sent and the targets marked bad are no longer known`,
      );
      if (opts.readOnly) {
        this.db = new Database(":memory:", { strict: true });
        createSchema(this.db);
        return;
      }
    }
    if (opts.readOnly) {
      try {
        this.db = openForReading(path);
      } catch (cause) {
        throw openError(path, cause);
      }
      return;
    }
    let db: Database | undefined;
    try {
      db = new Database(path, { create: true, strict: true });
      // busy_timeout first: the pragmas after it take locks too, and another process may hold one
      // (`fioup status` reading while the daemon writes, or recovering the WAL after a power cut).
      db.exec("PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;");
      createSchema(db);
    } catch (cause) {
      db?.close();
      throw openError(path, cause);
    }
    this.db = db;
  }

  close(): void {
    this.db.close();
  }

  /**
   * Runs `fn` in one transaction (inside another one: a savepoint of it) and returns its result.
   * Kill points reached inside (fioup/fault.ts) fire once the outermost transaction has committed,
   * never before: a point names a moment the power-cut tests find on disk. Those of a part that
   * threw (rolled back) are dropped with it. Every transaction of fioup.db goes through here, not
   * through `db.transaction` of the raw database, which would commit after such a point fired.
   * A write a full disk refused throws DeviceDbFullError (rolled back whole), so every writer
   * says it one way; every write of fioup.db runs here, a single statement too.
   */
  transaction<T>(fn: () => T): T {
    const mark = this.deferredPoints.length;
    this.depth++;
    let result: T;
    try {
      result = this.db.transaction(fn)();
    } catch (e) {
      this.deferredPoints.length = mark;
      throw this.depth === 1 ? writeError(this.path, e) : e;
    } finally {
      this.depth--;
    }
    if (this.depth === 0) {
      const points = this.deferredPoints.splice(0);
      for (const p of points) faultPoint(p);
    }
    return result;
  }

  /** A kill point of a write: at once outside a transaction, else after the outermost commit ({@link transaction}). */
  private afterCommit(point: string): void {
    if (this.depth > 0) this.deferredPoints.push(point);
    else faultPoint(point);
  }

  // --- updates ---

  createUpdate(u: { id: string; fromTarget: string | null; target: Target; explicit: boolean }): UpdateRow {
    const now = new Date().toISOString();
    this.transaction(() =>
      this.db
        .query(
          `INSERT INTO updates (id, from_target, to_target, version, target_json, state, explicit, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, 'created', ?, ?, ?)`,
        )
        .run(u.id, u.fromTarget, u.target.name, u.target.entry.custom.version, JSON.stringify(u.target), u.explicit ? 1 : 0, now, now),
    );
    return this.getUpdate(u.id)!;
  }

  getUpdate(id: string): UpdateRow | undefined {
    const r = this.db.query<RawUpdate, [string]>("SELECT * FROM updates WHERE id = ?").get(id);
    return r ? this.toRow(r) : undefined;
  }

  // Newest first by insertion (rowid), not by id: an id is a ULID of the device's clock, and a
  // clock set back (NTP after a boot in the future) made an older update read as the newest.

  /** The update not yet completed, failed or canceled, if any (there is at most one). */
  pendingUpdate(): UpdateRow | undefined {
    const r = this.db
      .query<RawUpdate, []>(
        "SELECT * FROM updates WHERE state NOT IN ('completed','failed','canceled') ORDER BY rowid DESC LIMIT 1",
      )
      .get();
    return r ? this.toRow(r) : undefined;
  }

  lastUpdate(): UpdateRow | undefined {
    const r = this.db.query<RawUpdate, []>("SELECT * FROM updates ORDER BY rowid DESC LIMIT 1").get();
    return r ? this.toRow(r) : undefined;
  }

  listUpdates(limit = 20): UpdateRow[] {
    return this.db
      .query<RawUpdate, [number]>("SELECT * FROM updates ORDER BY rowid DESC LIMIT ?")
      .all(limit)
      .map((r) => this.toRow(r));
  }

  /**
   * Saves a new state and, when given, the step that just finished and its events, in one transaction.
   * A state that ends the update (completed, failed, canceled) also drops, in that transaction, the
   * kv records kept for it while it ran (named `<what>:<update id>`: {@link updateKey}): nothing
   * resumes it, and whatever ended it (a cancel mid-fetch, a failure) need not know which it has.
   */
  setState(id: string, state: UpdateState, extra: { step?: StepName; error?: string | null; events?: DeviceEvent[] } = {}): void {
    const now = new Date().toISOString();
    this.transaction(() => {
      this.db
        .query("UPDATE updates SET state = ?, updated_at = ?, error = COALESCE(?, error) WHERE id = ?")
        .run(state, now, extra.error ?? null, id);
      if (ended(state)) this.db.query("DELETE FROM kv WHERE substr(key, -length(?1) - 1) = ':' || ?1").run(id);
      if (extra.step) this.db.query("INSERT OR REPLACE INTO update_steps (update_id, step, at) VALUES (?, ?, ?)").run(id, extra.step, now);
      if (extra.events?.length) this.enqueueEvents(extra.events);
      this.afterCommit(`state:${state}`); // power-cut tests: FIOUP_FAULT=state:<state> (fioup/fault.ts)
    });
  }

  setPlan(id: string, plan: UpdatePlan, bytesTotal: number): void {
    this.transaction(() =>
      this.db
        .query("UPDATE updates SET plan_json = ?, bytes_total = ?, updated_at = ? WHERE id = ?")
        .run(JSON.stringify(plan), bytesTotal, new Date().toISOString(), id),
    );
  }

  addBytesFetched(id: string, n: number): void {
    this.transaction(() => this.db.query("UPDATE updates SET bytes_fetched = bytes_fetched + ? WHERE id = ?").run(n, id));
  }

  stepDone(id: string, step: StepName): boolean {
    return !!this.db.query("SELECT 1 FROM update_steps WHERE update_id = ? AND step = ?").get(id, step);
  }

  private toRow(r: RawUpdate): UpdateRow {
    return {
      id: r.id,
      fromTarget: r.from_target,
      toTarget: r.to_target,
      version: r.version,
      target: JSON.parse(r.target_json),
      state: r.state as UpdateState,
      explicit: !!r.explicit,
      plan: r.plan_json ? JSON.parse(r.plan_json) : null,
      bytesTotal: r.bytes_total,
      bytesFetched: r.bytes_fetched,
      error: r.error,
      createdAt: r.created_at,
      updatedAt: r.updated_at,
      steps: this.db
        .query<{ step: string; at: string }, [string]>("SELECT step, at FROM update_steps WHERE update_id = ? ORDER BY at, rowid")
        .all(r.id),
    };
  }

  // --- event queue ---

  /** Queues events, then keeps the queue within MAX_QUEUED_EVENT_BYTES (dropEventsOverBound). */
  enqueueEvents(events: DeviceEvent[]): void {
    const q = this.db.query("INSERT INTO events (body) VALUES (?)");
    this.transaction(() => {
      for (const e of events) q.run(JSON.stringify(e));
      this.dropEventsOverBound();
    });
  }

  /**
   * Past the bound, drops the oldest queued events (down to QUEUE_CUT_TO), and notes in the queue
   * how many went and the device times of the first and last of them (one EventsDropped event,
   * merged with an earlier note not yet sent, in the place of the newest event dropped), so the
   * gateway hears of the gap once it is reached. The events of the update in progress (else the last one) go only after all others,
   * and the newest of each of its event types never: those say where the rollout stands
   * (deferred, released, completed and whether it succeeded); an update that floods the queue
   * with one type (a hold changing at every poll) loses only its older repeats.
   */
  private dropEventsOverBound(): void {
    // octet_length: the stored size, read without the bodies.
    const total = this.db.query<{ n: number }, []>("SELECT COALESCE(SUM(octet_length(body)), 0) AS n FROM events").get()!.n;
    if (total <= MAX_QUEUED_EVENT_BYTES) return;
    const current = (this.pendingUpdate() ?? this.lastUpdate())?.id ?? null;
    const type = "json_extract(body, '$.eventType.id')";
    const corr = "json_extract(body, '$.event.correlationId')";
    const keep = new Set(
      this.db
        .query<{ seq: number }, [string | null]>(`SELECT MAX(seq) AS seq FROM events WHERE ${corr} IS ?1 GROUP BY ${type}`)
        .all(current)
        .map((r) => r.seq),
    );
    // In the order they go: an earlier note not yet sent first (what it counted is carried into
    // the new one), then the others oldest first, then the update in progress's older repeats.
    // Read lazily and left at the cut: a queue of last week's release, unbounded, can hold
    // hundreds of thousands of events, which are neither loaded whole nor spread into arguments.
    const cols = `seq, octet_length(body) AS size, ${type} AS type, json_extract(body, '$.deviceTime') AS at,
      iif(${type} = '${EVENTS_DROPPED}', json_extract(body, '$.event.details'), NULL) AS details`;
    type Row = { seq: number; size: number; type: string | null; at: string; details: string | null };
    const passes: [sql: string, args: (string | null)[]][] = [
      [`SELECT ${cols} FROM events WHERE ${type} = '${EVENTS_DROPPED}' ORDER BY seq`, []],
      [`SELECT ${cols} FROM events WHERE ${type} IS NOT '${EVENTS_DROPPED}' AND ${corr} IS NOT ?1 ORDER BY seq`, [current]],
      [`SELECT ${cols} FROM events WHERE ${type} IS NOT '${EVENTS_DROPPED}' AND ${corr} IS ?1 ORDER BY seq`, [current]],
    ];
    let note: DroppedEvents | undefined;
    let left = total;
    let last = 0;
    const drop: number[] = [];
    cut: for (const [sql, args] of passes) {
      for (const r of this.db.query<Row, (string | null)[]>(sql).iterate(...args)) {
        if (left <= QUEUE_CUT_TO && r.type !== EVENTS_DROPPED) break cut;
        if (keep.has(r.seq)) continue;
        const d: DroppedEvents = r.details ? (JSON.parse(r.details) as DroppedEvents) : { dropped: 1, from: r.at, to: r.at };
        note = note ? { dropped: note.dropped + d.dropped, from: note.from < d.from ? note.from : d.from, to: note.to > d.to ? note.to : d.to } : d;
        drop.push(r.seq);
        if (r.seq > last) last = r.seq;
        left -= r.size;
      }
    }
    if (!note) return; // all of it the newest of the update in progress: nothing may go
    const del = this.db.query("DELETE FROM events WHERE seq = ?");
    for (const seq of drop) del.run(seq);
    const why = `the queue keeps at most ${MAX_QUEUED_EVENT_BYTES} bytes of events while the gateway is out of reach: the oldest were dropped`;
    this.db.query("INSERT INTO events (seq, body) VALUES (?, ?)").run(last, JSON.stringify(droppedEventsNote(note, why)));
  }

  /** The note of dropped events still waiting to be sent, if any. */
  droppedEvents(): DroppedEvents | undefined {
    const r = this.db
      .query<{ body: string }, [string]>("SELECT body FROM events WHERE json_extract(body, '$.eventType.id') = ? ORDER BY seq DESC LIMIT 1")
      .get(EVENTS_DROPPED);
    if (!r) return undefined;
    const { dropped, from, to } = JSON.parse((JSON.parse(r.body) as DeviceEvent).event.details ?? "{}") as DroppedEvents;
    return { dropped, from, to };
  }

  /** The oldest queued events, in order, with their sequence numbers. */
  peekEvents(limit: number): { seq: number; event: DeviceEvent }[] {
    return this.db
      .query<{ seq: number; body: string }, [number]>("SELECT seq, body FROM events ORDER BY seq LIMIT ?")
      .all(limit)
      .map((r) => ({ seq: r.seq, event: JSON.parse(r.body) }));
  }

  /** Deletes events up to and including `seq` (after the gateway accepted them). */
  ackEvents(upToSeq: number): void {
    this.transaction(() => this.db.query("DELETE FROM events WHERE seq <= ?").run(upToSeq));
  }

  queuedEventCount(): number {
    return this.db.query<{ n: number }, []>("SELECT COUNT(*) AS n FROM events").get()!.n;
  }

  // --- bad targets ---

  /** Marks `target` bad: its name and what it runs (targetContent), so the name published again with other content is not refused. */
  markBad(target: Target, reason: string): void {
    this.transaction(() =>
      this.db
        .query("INSERT OR REPLACE INTO bad_targets (name, reason, at, content) VALUES (?, ?, ?, ?)")
        .run(target.name, reason, new Date().toISOString(), targetContent(target.entry)),
    );
  }

  /**
   * Notes a failure of `target` that will happen again on every try (same `reason` each time);
   * the second identical one in a row marks the target bad. Returns true when it did.
   */
  notePermanentFailure(target: Target, reason: string): boolean {
    const key = permanentFailureKey(target.name);
    if (this.get<string>(key) !== reason) {
      this.set(key, reason);
      return false;
    }
    this.transaction(() => {
      this.markBad(target, `${reason} (failed twice)`);
      this.delete(key);
    });
    return true;
  }

  /** Forgets a noted failure of `target` (it fetched, or it runs). */
  forgetPermanentFailure(target: string): void {
    this.delete(permanentFailureKey(target));
  }

  /** The names of the targets marked bad, oldest mark first (what `fioup status` lists). */
  badTargets(): string[] {
    return this.db.query<{ name: string }, []>("SELECT name FROM bad_targets ORDER BY at").all().map((r) => r.name);
  }

  /** The marks as target selection reads them: name → the content that failed (null for a mark made before fioup recorded it). */
  badTargetMarks(): BadTargets {
    // SELECT *: a database opened read-only by `fioup status` may predate the content column.
    const rows = this.db.query<{ name: string; content?: string | null }, []>("SELECT * FROM bad_targets").all();
    return new Map(rows.map((r) => [r.name, r.content ?? null]));
  }

  // --- key/value: current target, last apps-states ---

  get<T>(key: string): T | undefined {
    const r = this.db.query<{ value: string }, [string]>("SELECT value FROM kv WHERE key = ?").get(key);
    return r ? (JSON.parse(r.value) as T) : undefined;
  }

  set(key: string, value: unknown): void {
    this.transaction(() => this.db.query("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)").run(key, JSON.stringify(value)));
  }

  delete(key: string): void {
    this.transaction(() => this.db.query("DELETE FROM kv WHERE key = ?").run(key));
  }

  currentTarget(): Target | undefined {
    return this.get<Target>("current_target");
  }

  /**
   * The target the device now runs. A target that runs is not bad: a mark from earlier failures
   * (say, a full disk, then `fioup update N` once there was room) goes, with any failure noted
   * against it, so `status` does not list the running target as bad.
   */
  setCurrentTarget(t: Target): void {
    this.transaction(() => {
      this.set("current_target", t);
      this.db.query("DELETE FROM bad_targets WHERE name = ?").run(t.name);
      this.forgetPermanentFailure(t.name);
    });
  }
}
