/**
 * The one mechanism that bounds what waits for the database in a gateway process: a count of
 * writes waiting, at most `max`; past it a new write is refused at once with a
 * {@link StoreUnavailableError} (app.ts answers 503 with `Retry-After`) instead of holding its
 * request, its body and a promise for as long as the database stalls.
 *
 * Both stores use it, with two bounds each: the events queued for the next group commit
 * (EVENT_QUEUE_MAX, counted in events from the queue until sent), and the
 * upserts of a device's latest state, apps-states and system info (STATE_WRITES_MAX, counted in
 * writes from the call until answered). The writes the gateway makes on its own (the sightings
 * flush, the leader lease) are not bounded: they are few, batched, and the lease must never be
 * refused.
 *
 * @module
 */
import { StoreUnavailableError } from "./types.ts";

export class WaitingWrites {
  #waiting = 0;

  constructor(
    /** How many may wait at most. */
    readonly max: number,
    /** The error a refused write rejects with (`what`: the write's own words, e.g. "Cannot store apps-states"). */
    private readonly refusal: (waiting: number, max: number, what: string) => StoreUnavailableError,
  ) {}

  /** How many wait now. */
  get waiting(): number {
    return this.#waiting;
  }

  /**
   * Counts `n` more waiting and returns undefined, or, if that would pass `max`, counts nothing
   * and returns the refusal. A write is always admitted when nothing waits, so one larger than
   * the bound (a POST of many events) is never refused for good. Each admitted `n` must be
   * given back with {@link done}.
   */
  admit(n: number, what: string): StoreUnavailableError | undefined {
    if (this.#waiting && this.#waiting + n > this.max) return this.refusal(this.#waiting, this.max, what);
    this.#waiting += n;
    return undefined;
  }

  /** `n` admitted earlier no longer wait (sent, or answered). */
  done(n: number): void {
    this.#waiting -= n;
  }

  /** Runs `write`, counted as one waiting from this call until it settles; past the bound rejects at once, running nothing. */
  async run<T>(what: string, write: () => Promise<T>): Promise<T> {
    const refused = this.admit(1, what);
    if (refused) throw refused;
    try {
      return await write();
    } finally {
      this.done(1);
    }
  }
}

/**
 * How many events may wait for the database in one gateway process, queued but not yet sent
 * (the statements or the transaction already running are not counted). While the database
 * stalls (a lock, a slow disk, a failover) events queue up; past this bound a new POST /events
 * is refused at once with {@link EventQueueFullError} (503, `Retry-After`) instead of holding
 * the device and growing memory without end. Counted in events, not callers: memory, the size of
 * the statements that drain the backlog and the time they take grow with events, and a POST holds
 * 1 to 500. 10,000 typical events (a few hundred bytes each) are a few MB, and a few hundred ms
 * of writes once the database answers; a healthy gateway never comes near it (its queue holds
 * what arrives during one statement). A caller is always taken when nothing waits, so a POST
 * larger than the bound is never refused for good. The EventWriter (SQLite) and
 * PostgresStore.connect take another bound as an option (`eventQueueMax`, for tests);
 * `GATEWAY_EVENT_QUEUE_MAX` sets it for the process.
 */
export const EVENT_QUEUE_MAX = 10_000;

/** The bound on queued events: `max`, else `GATEWAY_EVENT_QUEUE_MAX` if a positive number, else {@link EVENT_QUEUE_MAX}. */
export const eventQueueBound = (max = boundFromEnv("GATEWAY_EVENT_QUEUE_MAX", EVENT_QUEUE_MAX)) =>
  new WaitingWrites(max, (waiting, max) => new EventQueueFullError(waiting, max));

/** The environment variable `name` if a positive number, else `fallback`. */
function boundFromEnv(name: string, fallback: number): number {
  const n = Number(process.env[name]);
  return n > 0 ? Math.floor(n) : fallback;
}

/**
 * A POST /events refused because `max` events already wait for the database (see
 * {@link EVENT_QUEUE_MAX}): nothing of it was written, nothing queued before it is affected;
 * the device keeps its events and sends them again later.
 */
export class EventQueueFullError extends StoreUnavailableError {
  override name = "EventQueueFullError";
  constructor(queued: number, max: number) {
    super(`Cannot store events now: ${queued} events are waiting for the database (at most ${max}); retry later`);
  }
}

/**
 * How many upserts of a device's latest state (POST /apps-states; PUT /system_info,
 * /system_info/network, /system_info/config) may wait for the database in one gateway process,
 * counted from the call until the database answered. While it stalls each one holds its request,
 * its body (up to 256 KB) and a promise; past this bound a new one is refused at once with
 * {@link StateWritesFullError} (503, `Retry-After`). Refusing costs little: each write replaces
 * the device's previous copy, the device sends it again (fioup at its next cycle), and all that
 * is lost meanwhile is that the gateway shows the stale copy a little longer. 500: a healthy
 * gateway has a few in flight (each takes 1-2 ms, a commit's fsync, and a device sends them at
 * its start and when its apps change), and 500 are a second or more of SQLite's commits, one
 * after another on its writer thread, so only a stall or a sustained overload reaches it; 500
 * waiting bodies are a few MB at their usual size (1-5 KB), at most 128 MB at the largest
 * allowed. The EventWriter and PostgresStore.connect take another bound as an option
 * (`stateWritesMax`, for tests); `GATEWAY_STATE_WRITES_MAX` sets it for the process.
 */
export const STATE_WRITES_MAX = 500;

/** The bound on waiting state upserts: `max`, else `GATEWAY_STATE_WRITES_MAX` if a positive number, else {@link STATE_WRITES_MAX}. */
export const stateWritesBound = (max = boundFromEnv("GATEWAY_STATE_WRITES_MAX", STATE_WRITES_MAX)) =>
  new WaitingWrites(max, (waiting, max, what) => new StateWritesFullError(waiting, max, what));

/**
 * An apps-states or system-info upsert refused because `max` of them already wait for the
 * database (see {@link STATE_WRITES_MAX}): nothing of it was written, the device sends it again.
 */
export class StateWritesFullError extends StoreUnavailableError {
  override name = "StateWritesFullError";
  constructor(waiting: number, max: number, what: string) {
    super(`${what} now: ${waiting} device state writes are waiting for the database (at most ${max}); retry later`);
  }
}
