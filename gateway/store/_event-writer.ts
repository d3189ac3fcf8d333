/**
 * Durable writes for SqliteStore on a file without stalling the event loop: a synchronous=FULL
 * commit costs an fsync (about 2 ms on a VM disk), and bun:sqlite is synchronous, so commits
 * run on a worker thread with its own connection (./_writer-thread.ts). While one event batch
 * commits, new events queue up and go in the next transaction (group commit); the first batch
 * after a quiet moment is sent at the end of the event loop's turn (setImmediate), so the POSTs
 * read in the same turn share one message and one commit, and while small batches go out often it
 * waits a few ms for more (COMMIT_DELAY_MS). Each caller's promise resolves only after the commit
 * holding its events returned.
 *
 * The queue is bounded: while a commit stalls (another process holds the write lock, a slow
 * disk, a hung thread until the watchdog ends it) new events queue behind it; once
 * `eventQueueMax` events wait (EVENT_QUEUE_MAX in ./_waiting-writes.ts, 10,000, or
 * `GATEWAY_EVENT_QUEUE_MAX`; the batch on the thread not counted), a new append is refused at
 * once with EventQueueFullError, which the gateway answers 503 with `Retry-After`, as on
 * PostgreSQL: the device keeps its events and sends them later; what was queued before stays
 * queued. It also bounds the next transaction's size.
 *
 * The other writes of the device path run there too: the sightings flush (last_seen, tags,
 * target, apps; a transaction per call, between event batches), the leader lease, apps-states
 * and system info. On the main thread they waited for SQLite's one write lock whenever the
 * worker held it, and SQLite's busy handler waits by sleeping, so the whole event loop slept
 * 1-26 ms at a time. Apps-states and system info are bounded like the events (putState: at most
 * STATE_WRITES_MAX, 500, or `GATEWAY_STATE_WRITES_MAX`, waiting until answered; past it
 * StateWritesFullError, 503 with `Retry-After`); the sightings flush (the gateway's own, batched)
 * and the lease (never to be refused) are not.
 *
 * If the thread dies (an uncaught error, an exit, a terminate), or hangs (the call it is on goes
 * 30 s without an answer: the watchdog in ./_writer-thread.ts, which says why 30 s, terminates it
 * and it counts as dead; `GATEWAY_WRITER_WATCHDOG_MS` sets another bound), every call it had not answered,
 * and every call made while none runs, rejects at once with {@link WriterUnavailableError}: the
 * device gets a 5xx and retries, and as events are deduplicated by id and the other writes are
 * upserts, a write that did commit before the death is not doubled. A new thread is started at
 * once for the first death in a minute, then after 0.5 s, 1 s, 2 s ... (at most 30 s) while
 * deaths keep coming; each restart logs one line.
 *
 * Fault point (for tests; nothing happens unless the environment asks, read when the store
 * opens): `GATEWAY_FAULT=writer-crash` makes the writer thread throw an uncaught error on
 * receiving the n-th event batch, before committing it; `GATEWAY_FAULT=writer-crash-after-commit`
 * after committing it, before answering; `GATEWAY_FAULT=writer-exit` makes the thread exit
 * (code 70) on receiving it; `GATEWAY_FAULT=writer-hang` makes it hang for ever (never answer,
 * never die) after committing it, before answering, and `GATEWAY_FAULT=writer-hang-before-commit`
 * inside its transaction, holding the write lock. `GATEWAY_FAULT_NTH=<n>` picks the batch (default 1).
 * It fires once per store.
 *
 * @module
 */
import { backoffDelay } from "../../lib/net/backoff.ts";
import type { DeviceEvent } from "../../lib/api/index.ts";
import {
  EventWriteError,
  WriterThread,
  WriterUnavailableError,
  type CrashPoint,
  type Reply,
  type SightingParams,
  type SqlValue,
  type StatementName,
  type WriterMessage,
} from "./_writer-thread.ts";
import { eventQueueBound, stateWritesBound, type WaitingWrites } from "./_waiting-writes.ts";
import { eventBody } from "./_rows.ts";

interface Pending {
  uuid: string;
  ids: string[];
  /** Each event serialised when it was queued. */
  bodies: string[];
  resolve(n: number): void;
  reject(e: unknown): void;
}

/**
 * Group commit's wait. Under a steady trickle of events (each device's POST a millisecond or so
 * after the last, as when every check-in opens a new connection) each batch held one event, so
 * each cost the writer thread a wake-up and a commit (an fsync) of its own, and the main thread a
 * message. Waiting COMMIT_DELAY_MS for more when the thread finished the previous batch less than
 * BUSY_MS ago (counted from the end, so a slow commit does not end the wait) lets them share.
 * In bench/gateway-checkin (README there, new connection per request): a 2 ms wait took the
 * writer's CPU from 82-91 to 73-75 µs per request (2026-12-04 10:11 UTC); 6 ms took it to 53-58,
 * its wake-ups from 0.57-0.59 to 0.37-0.39 per request and the rate from 1,493-1,653 to 1,580-1,905 requests/s
 * in the same run (12:20 UTC); 12 ms was no better than 6.
 *
 * No wait after a batch of FULL_BATCH POSTs or more (devices, not one device's backlog of events): then they come faster than commits and
 * share them anyway, and a wait would only hold back devices whose next check-in waits for this
 * commit (kept alive, 128 devices in flight, a check-in's rate is bound by its POST's latency).
 * An event after a quiet moment goes at once; the wait adds at most COMMIT_DELAY_MS to a POST that
 * waits for an fsync anyway.
 */
const COMMIT_DELAY_MS = 6;
const BUSY_MS = 20;
const FULL_BATCH = 8;

/** Deaths within this window count towards the restart delay. */
const DEATH_WINDOW_MS = 60_000;
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 30_000;

/** How long to wait before the next start, given the deaths in the last minute (this one included). */
export function restartDelayMs(recentDeaths: number): number {
  if (recentDeaths <= 1) return 0;
  // The second death in a minute waits FIRST_DELAY_MS: restart n + 1 is backoff try n.
  return backoffDelay(recentDeaths - 1, FIRST_DELAY_MS, MAX_DELAY_MS);
}

const FAULT_POINTS: Record<string, CrashPoint> = {
  "writer-crash": "before-commit",
  "writer-crash-after-commit": "after-commit",
  "writer-exit": "exit",
  "writer-hang": "hang-after-commit",
  "writer-hang-before-commit": "hang-before-commit",
};

/** The crash the fault point asks for, from the environment (see the module comment). */
function faultFromEnv(): { point: CrashPoint; nth: number } | undefined {
  const name = process.env.GATEWAY_FAULT;
  const point = name === undefined ? undefined : FAULT_POINTS[name];
  return point && { point, nth: Number(process.env.GATEWAY_FAULT_NTH ?? "1") };
}

export interface EventWriterOptions {
  /** Where the restart line goes (default: stderr). */
  log?: (line: string) => void;
  /** How long the writer thread's call may go unanswered before it counts as hung (default: `GATEWAY_WRITER_WATCHDOG_MS`, else WATCHDOG_MS, 30 s). */
  watchdogMs?: number;
  /** Events queued and not yet sent at most; past it append refuses (default: `GATEWAY_EVENT_QUEUE_MAX`, else EVENT_QUEUE_MAX, 10,000). */
  eventQueueMax?: number;
  /** Apps-states and system-info upserts waiting at most; past it putState refuses (default: `GATEWAY_STATE_WRITES_MAX`, else STATE_WRITES_MAX, 500). */
  stateWritesMax?: number;
}

/** The watchdog bound from the environment, if set to a positive number of milliseconds. */
function watchdogFromEnv(): number | undefined {
  const ms = Number(process.env.GATEWAY_WRITER_WATCHDOG_MS);
  return ms > 0 ? ms : undefined;
}

export class EventWriter {
  readonly #path: string;
  readonly #log: (line: string) => void;
  readonly #watchdogMs: number | undefined;
  /** Events in #queue, at most `eventQueueMax`. */
  readonly #queued: WaitingWrites;
  /** Apps-states and system-info upserts not yet answered, at most `stateWritesMax`. */
  readonly #stateWrites: WaitingWrites;
  #thread: WriterThread | undefined;
  /** Why no thread runs (while a restart waits). */
  #down = "";
  #restartTimer: Timer | undefined;
  #deaths: number[] = [];
  #restarts = 0;
  #fault: { point: CrashPoint; nth: number } | undefined;
  #batches = 0;
  #queue: Pending[] = [];
  #inFlight = false;
  /** A pump is due (at the end of this turn of the event loop, or after COMMIT_DELAY_MS). */
  #scheduled = false;
  /** When the thread last finished the event batches it had (performance.now()). */
  #idleSince = -Infinity;
  /** POSTs (appends) in the last batch sent: many devices at once, not one device's backlog of events. */
  #lastBatch = 0;
  #closed = false;
  /** Calls other than event batches not yet answered. */
  #others = 0;

  constructor(path: string, opts: EventWriterOptions = {}) {
    this.#path = path;
    this.#log = opts.log ?? ((line) => console.error(line));
    this.#fault = faultFromEnv();
    this.#watchdogMs = opts.watchdogMs ?? watchdogFromEnv();
    this.#queued = eventQueueBound(opts.eventQueueMax);
    this.#stateWrites = stateWritesBound(opts.stateWritesMax);
    this.#start();
  }

  #start() {
    this.#restartTimer = undefined;
    const thread: WriterThread = new WriterThread(this.#path, (reason) => this.#died(thread, reason), this.#watchdogMs);
    this.#thread = thread;
  }

  #died(thread: WriterThread, reason: string) {
    if (this.#thread !== thread) return;
    this.#thread = undefined;
    if (this.#closed) return;
    const now = performance.now();
    this.#deaths = [...this.#deaths.filter((t) => now - t < DEATH_WINDOW_MS), now];
    const delay = restartDelayMs(this.#deaths.length);
    this.#restarts++;
    this.#down = `it stopped (${reason}) and restarts in ${delay} ms`;
    this.#log(`gateway: the SQLite writer thread stopped: ${reason}; restart ${this.#restarts} in ${delay} ms`);
    if (delay === 0) this.#start();
    else {
      this.#restartTimer = setTimeout(() => this.#start(), delay);
      this.#restartTimer.unref(); // like the worker: a pending restart does not keep the process alive
    }
  }

  #call(msg: WriterMessage, what: string): Promise<Reply> {
    if (!this.#thread) return Promise.reject(new WriterUnavailableError(what, this.#down));
    return this.#thread.call(msg, what);
  }

  /**
   * Queues `events` for the next commit; resolves with how many were new once it committed.
   * Each event is serialised here, before it is queued, so an event that cannot be (too deep,
   * a cycle) rejects this call alone.
   *
   * @throws {WriterUnavailableError} If the writer thread died before answering, or is down.
   * @throws {EventQueueFullError} At once, queuing nothing, if `eventQueueMax` events already wait (a commit is stalled).
   */
  append(uuid: string, events: DeviceEvent[]): Promise<number> {
    if (this.#closed) return Promise.reject(new EventWriteError("Cannot store events: the store is closed"));
    let bodies: string[];
    try {
      bodies = events.map(eventBody);
    } catch (err) {
      return Promise.reject(new EventWriteError(`Cannot store events: ${(err as Error).message}`));
    }
    const refused = this.#queued.admit(events.length, "Cannot store events");
    if (refused) return Promise.reject(refused);
    return new Promise((resolve, reject) => {
      this.#queue.push({ uuid, ids: events.map((e) => e.id), bodies, resolve, reject });
      // The first batch after a quiet moment goes at the end of this turn of the event loop, so the
      // POSTs read in the same turn share its message and its commit; while batches come often
      // (the thread finished the last one less than BUSY_MS ago) and hold few POSTs, it waits
      // COMMIT_DELAY_MS for more.
      if (!this.#inFlight && !this.#scheduled) {
        this.#scheduled = true;
        const go = () => {
          this.#scheduled = false;
          if (!this.#inFlight) void this.#pump();
        };
        if (this.#lastBatch < FULL_BATCH && performance.now() - this.#idleSince < BUSY_MS) setTimeout(go, COMMIT_DELAY_MS);
        else setImmediate(go);
      }
    });
  }

  /** A write other than an event batch, in the order sent on the writer's connection. */
  async #other(msg: WriterMessage, what: string): Promise<Reply> {
    if (this.#closed) throw new EventWriteError(`${what}: the store is closed`);
    this.#others++;
    try {
      return await this.#call(msg, what);
    } finally {
      this.#others--;
    }
  }

  /** Runs `sql` once per row in one transaction of its own (an event batch never waits for more than one); the rows it changed. */
  async run(sql: StatementName, rows: SqlValue[][], what: string): Promise<number> {
    return rows.length ? ((await this.#other({ op: "run", sql, rows }, what)).counts[0] ?? 0) : 0;
  }

  /**
   * An upsert of a device's latest state (apps-states, system info), like {@link run}, but
   * refused at once with StateWritesFullError while `stateWritesMax` of them wait (a commit is
   * stalled): the device sends it again.
   */
  putState(sql: "appsStates" | "systemInfo", row: SqlValue[], what: string): Promise<void> {
    return this.#stateWrites.run(what, async () => void (await this.run(sql, [row], what)));
  }

  /** Applies a sightings flush in one transaction. */
  recordSightings(rows: SightingParams[]): Promise<void> {
    return this.run("sighting", rows, "Cannot record sightings").then(() => {});
  }

  /** Store.tryLease on the writer's connection, timed by the database's clock when it runs. */
  async tryLease(name: string, holder: string, ttlMs: number): Promise<boolean> {
    const reply = await this.#other({ op: "lease", name, holder, ttlMs }, `Cannot take the lease ${name}`);
    return reply.counts[0] === 1;
  }

  releaseLease(name: string, holder: string): Promise<void> {
    return this.run("releaseLease", [[name, holder]], `Cannot release the lease ${name}`).then(() => {});
  }

  /** Event batches sent to the thread so far, each one transaction (group commit: a batch holds every event queued meanwhile). */
  get batchesSent(): number {
    return this.#batches;
  }

  /** The fault point's crash for this batch, if it is the one asked for (once). */
  #crashFor(): CrashPoint | undefined {
    this.#batches++;
    if (!this.#fault || this.#batches !== this.#fault.nth) return undefined;
    const point = this.#fault.point;
    this.#fault = undefined;
    return point;
  }

  /** Sends everything queued as one transaction; repeats while more arrived meanwhile. */
  async #pump() {
    this.#inFlight = true;
    try {
      while (this.#queue.length) {
        const batch = this.#queue;
        this.#queue = [];
        this.#lastBatch = batch.length;
        this.#queued.done(batch.reduce((n, p) => n + p.ids.length, 0));
        const items = batch.map((p) => ({ uuid: p.uuid, ids: p.ids, bodies: p.bodies }));
        try {
          const reply = await this.#call({ op: "events", items, now: new Date().toISOString(), crash: this.#crashFor() }, "Cannot store events");
          batch.forEach((p, i) => {
            const error = reply.errors?.[i];
            if (error != null) p.reject(new EventWriteError(`Cannot store events: ${error}`));
            else p.resolve(reply.counts[i] ?? 0);
          });
        } catch (err) {
          for (const p of batch) p.reject(err);
        }
      }
    } finally {
      this.#idleSince = performance.now();
      this.#inFlight = false;
    }
  }

  /** Waits for queued writes to commit, then closes the worker's connection. */
  async close() {
    this.#closed = true;
    while (this.#inFlight || this.#queue.length || this.#others) await Bun.sleep(1);
    clearTimeout(this.#restartTimer);
    const thread = this.#thread;
    this.#thread = undefined;
    await thread?.stop();
  }
}
