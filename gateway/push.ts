/**
 * Wakes devices waiting for news (routes/repo-wait.ts) when a newer signed timestamp exists.
 * One watcher per replica reads the latest timestamp version from the database every 250 ms, and
 * only while some device is waiting: the cost is one indexed query per replica, not one per
 * device, and a publish through any replica reaches the devices held by every other within
 * about a quarter of a second. (PostgreSQL's LISTEN/NOTIFY would save the query but needs a
 * connection of its own per replica and does not exist on SQLite; polling serves both.)
 *
 * Memory: tens of thousands of devices may wait on one replica, so a waiter is one small object
 * in a bucket of waiters whose time is up in the same tick. The tick that reads the database
 * also answers the buckets that are due: no timer and no abort listener per waiter, and one
 * closure (the client's close hook) only when the wait has a client that can leave.
 *
 * @module
 */
import type { TufStorage } from "./ota/storage.ts";

/** How a wait ends: the newest version, or undefined (time is up, or the wait was cancelled). */
type Settle = (version: number | undefined) => void;

/** What a wait may be told by: the client going away (the transport's connection, env.connection). */
export interface Leaving {
  readonly closed: boolean;
  /** Set by the watch while the wait is queued; called (once) when the client leaves. */
  onClose: (() => void) | undefined;
}

/** One waiting device. */
class Waiter {
  /** The bucket it is in; undefined once settled. */
  bucket: Set<Waiter> | undefined;
  constructor(
    readonly after: number,
    readonly settle: Settle,
  ) {}
}

export class TimestampWatch {
  /** Devices waiting in this process, over every watch (bench/push reads it). */
  static waitingInProcess = 0;

  #version = 0;
  /** Waiters by due tick (deadline / pollMs, rounded up): a wait ends at most one tick late. */
  readonly #due = new Map<number, Set<Waiter>>();
  #waiting = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #reading: Promise<void> | undefined;

  constructor(
    private readonly storage: Pick<TufStorage, "getLatest">,
    private readonly pollMs = 250,
  ) {}

  /**
   * Resolves with the newest version once it is above `after`, or undefined after `timeoutMs`
   * or as soon as `client` leaves (its close hook ends the wait).
   */
  waitAfter(after: number, timeoutMs: number, client?: Leaving): Promise<number | undefined> {
    if (this.#version > after) return Promise.resolve(this.#version);
    // While devices wait, the tick reads the database every pollMs: the version here is that fresh.
    if (this.#timer && timeoutMs > 0) return this.#enqueue(after, timeoutMs, client);
    return this.#read().then(() => {
      if (this.#version > after) return this.#version;
      if (timeoutMs <= 0) return undefined;
      return this.#enqueue(after, timeoutMs, client);
    });
  }

  #enqueue(after: number, timeoutMs: number, client: Leaving | undefined): Promise<number | undefined> {
    const { promise, resolve } = Promise.withResolvers<number | undefined>();
    const w = new Waiter(after, resolve);
    const tick = Math.ceil((performance.now() + timeoutMs) / this.pollMs);
    let bucket = this.#due.get(tick);
    if (!bucket) this.#due.set(tick, (bucket = new Set()));
    bucket.add(w);
    w.bucket = bucket;
    this.#waiting++;
    TimestampWatch.waitingInProcess++;
    this.#start();
    if (client) this.#endWhenLeaving(w, client);
    return promise;
  }

  /** Its own scope, so the close hook keeps the waiter and the watch, nothing else of the request. */
  #endWhenLeaving(w: Waiter, client: Leaving): void {
    if (client.closed) this.#settle(w, undefined);
    else client.onClose = () => this.#settle(w, undefined);
  }

  /** How many devices are waiting on this replica (for /metrics and tests). */
  get waiting(): number {
    return this.#waiting;
  }

  #settle(w: Waiter, version: number | undefined): void {
    const bucket = w.bucket;
    if (!bucket) return;
    w.bucket = undefined;
    bucket.delete(w);
    this.#waiting--;
    TimestampWatch.waitingInProcess--;
    if (!this.#waiting) this.#stop();
    w.settle(version);
  }

  #start() {
    if (this.#timer) return;
    this.#timer = setInterval(() => this.#tick(), this.pollMs);
    this.#timer.unref?.();
  }

  #stop() {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#due.clear();
  }

  #tick() {
    const now = performance.now() / this.pollMs; // monotonic: a wall-clock step never holds a wait past its timeout
    for (const [tick, bucket] of this.#due) {
      if (tick > now) continue;
      this.#due.delete(tick);
      for (const w of bucket) this.#settle(w, undefined);
    }
    if (this.#waiting) void this.#read();
  }

  /** One read at a time, shared by everyone asking meanwhile. */
  #read(): Promise<void> {
    this.#reading ??= this.storage
      .getLatest("timestamp")
      .then((rec) => {
        // A waiter is queued only while its `after` is at least the version known then, so only a
        // newer version can answer anyone: no walk over every held device on the other reads.
        if (!rec || rec.version <= this.#version) return;
        const v = (this.#version = rec.version);
        for (const bucket of this.#due.values()) for (const w of bucket) if (v > w.after) this.#settle(w, v);
      })
      .catch(() => {
        // the database is away for a moment: waiters keep waiting, the next tick tries again
      })
      .finally(() => (this.#reading = undefined));
    return this.#reading;
  }
}
