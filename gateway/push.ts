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
 * A wait names its device, so that revoking the device ends its held waits at once
 * (`endWaitsOf`, answered 403 by routes/repo-wait.ts): otherwise a revoked device's wait, let in
 * before the revocation, would still be answered with the next version up to a minute later.
 * The device's waits hang off one Map entry as a chain through the waiters (usually one), so a
 * held wait costs a field or two more, not a Set.
 *
 * The same chain bounds how many waits one device holds (`perDevice`, devices/waits.ts's
 * policy): a device opening one more ends its oldest, as if that one's time were up. Otherwise one
 * device certificate could hold every wait a replica may (the transport's share of its
 * connections) and every other device would be refused push. The chain is newest first, so the
 * oldest is its end, reached in at most `perDevice` steps: no count kept, no closure.
 *
 * @module
 */
import type { TufStorage } from "./ota/storage.ts";

/**
 * How a wait ends: the newest version, undefined (time is up, or the client left), or null: the
 * gateway ended it, as the device may no longer wait (revoked).
 */
export type WaitEnd = number | undefined | null;
type Settle = (version: WaitEnd) => void;

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
  /** The next wait of the same device (TimestampWatch's #byDevice chain). */
  sameDevice: Waiter | undefined;
  constructor(
    readonly after: number,
    readonly settle: Settle,
    readonly device: string | undefined,
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
  /** The first of each named device's waits; the rest follow through `sameDevice`. */
  readonly #byDevice = new Map<string, Waiter>();
  /** Waits ended because their device opened more than `perDevice` (for /metrics: a device, or a cloned certificate, asking again and again). */
  endedPastCap = 0;

  constructor(
    private readonly storage: Pick<TufStorage, "getLatest">,
    private readonly pollMs = 250,
    /** The most waits one named device holds here at once; one more ends its oldest (undefined: time is up). */
    private readonly perDevice = Infinity,
  ) {}

  /**
   * Resolves with the newest version once it is above `after`, or undefined after `timeoutMs`
   * or as soon as `client` leaves (its close hook ends the wait) or `device` holds `perDevice`
   * newer waits, or null when `endWaitsOf(device)` ends it.
   */
  waitAfter(after: number, timeoutMs: number, client?: Leaving, device?: string): Promise<WaitEnd> {
    if (this.#version > after) return Promise.resolve(this.#version);
    // While devices wait, the tick reads the database every pollMs: the version here is that fresh.
    if (this.#timer && timeoutMs > 0) return this.#enqueue(after, timeoutMs, client, device);
    return this.#read().then(() => {
      if (this.#version > after) return this.#version;
      if (timeoutMs <= 0) return undefined;
      return this.#enqueue(after, timeoutMs, client, device);
    });
  }

  /** Ends every wait of `device` held here with null (it was revoked); returns how many. */
  endWaitsOf(device: string): number {
    let n = 0;
    for (let w = this.#byDevice.get(device); w; w = this.#byDevice.get(device)) {
      if (w.bucket) n++;
      else this.#unchain(w, device); // settled already (never left in the chain; this only guards the loop)
      this.#settle(w, null);
    }
    return n;
  }

  #enqueue(after: number, timeoutMs: number, client: Leaving | undefined, device: string | undefined): Promise<WaitEnd> {
    const { promise, resolve } = Promise.withResolvers<WaitEnd>();
    const w = new Waiter(after, resolve, device);
    if (device !== undefined) {
      w.sameDevice = this.#byDevice.get(device);
      this.#byDevice.set(device, w);
    }
    const tick = Math.ceil((performance.now() + timeoutMs) / this.pollMs);
    let bucket = this.#due.get(tick);
    if (!bucket) this.#due.set(tick, (bucket = new Set()));
    bucket.add(w);
    w.bucket = bucket;
    this.#waiting++;
    TimestampWatch.waitingInProcess++;
    this.#start();
    if (client) this.#endWhenLeaving(w, client);
    // After the new wait is counted: ending the others first could stop the watch (none waiting).
    if (device !== undefined) this.#endPastCap(w, device);
    return promise;
  }

  /** Ends the waits of `device` past its `perDevice` newest (`newest` first in its chain), as timed out. */
  #endPastCap(newest: Waiter, device: string): void {
    let last = newest;
    for (let n = 1; n < this.perDevice && last.sameDevice; n++) last = last.sameDevice;
    // Settling unchains it: `last.sameDevice` moves on to the next older one, if any.
    for (let w = last.sameDevice; w; w = last.sameDevice) {
      if (w.bucket) {
        this.endedPastCap++;
        this.#settle(w, undefined);
      } else this.#unchain(w, device);
    }
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

  #settle(w: Waiter, version: WaitEnd): void {
    const bucket = w.bucket;
    if (!bucket) return;
    w.bucket = undefined;
    bucket.delete(w);
    if (w.device !== undefined) this.#unchain(w, w.device);
    this.#waiting--;
    TimestampWatch.waitingInProcess--;
    if (!this.#waiting) this.#stop();
    w.settle(version);
  }

  /** Takes `w` out of its device's chain. */
  #unchain(w: Waiter, device: string): void {
    const first = this.#byDevice.get(device);
    if (first === w) {
      if (w.sameDevice) this.#byDevice.set(device, w.sameDevice);
      else this.#byDevice.delete(device);
    } else {
      let prev = first;
      while (prev && prev.sameDevice !== w) prev = prev.sameDevice;
      if (prev) prev.sameDevice = w.sameDevice;
    }
    w.sameDevice = undefined;
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
    this.#byDevice.clear();
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
