/**
 * The one mechanism that bounds what waits for the database in a gateway process: a count of
 * writes waiting, at most `max`; past it a new write is refused at once with a
 * {@link StoreUnavailableError} (app.ts answers 503 with `Retry-After`) instead of holding its
 * request, its body and a promise for as long as the database stalls.
 *
 * Both stores use it, with two bounds each: the events queued for the next group commit
 * (EVENT_QUEUE_MAX in ./types.ts, counted in events from the queue until sent), and the
 * upserts of a device's latest state, apps-states and system info (STATE_WRITES_MAX, counted in
 * writes from the call until answered). The writes the gateway makes on its own (the sightings
 * flush, the leader lease) are not bounded: they are few, batched, and the lease must never be
 * refused.
 *
 * @module
 */
import type { StoreUnavailableError } from "./types.ts";

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
