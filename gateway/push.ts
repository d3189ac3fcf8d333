/**
 * Wakes devices waiting for news (routes/repo-wait.ts) when a newer signed timestamp exists.
 * One watcher per replica reads the latest timestamp version from the database every 250 ms, and
 * only while some device is waiting: the cost is one indexed query per replica, not one per
 * device, and a publish through any replica reaches the devices held by every other within
 * about a quarter of a second. (PostgreSQL's LISTEN/NOTIFY would save the query but needs a
 * connection of its own per replica and does not exist on SQLite; polling serves both.)
 *
 * @module
 */
import type { TufStorage } from "./ota/storage.ts";

interface Waiter {
  after: number;
  resolve(version: number | undefined): void;
}

export class TimestampWatch {
  #version = 0;
  #waiters = new Set<Waiter>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #reading: Promise<void> | undefined;

  constructor(
    private readonly storage: Pick<TufStorage, "getLatest">,
    private readonly pollMs = 250,
  ) {}

  /** Resolves with the newest version once it is above `after`, or undefined after `timeoutMs` or on abort. */
  async waitAfter(after: number, timeoutMs: number, signal?: AbortSignal): Promise<number | undefined> {
    await this.#read();
    if (this.#version > after) return this.#version;
    if (timeoutMs <= 0 || signal?.aborted) return undefined;
    return new Promise((resolve) => {
      const waiter: Waiter = {
        after,
        resolve: (v) => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", abort);
          this.#waiters.delete(waiter);
          if (!this.#waiters.size) this.#stop();
          resolve(v);
        },
      };
      const abort = () => waiter.resolve(undefined);
      const timer = setTimeout(abort, timeoutMs);
      signal?.addEventListener("abort", abort, { once: true });
      this.#waiters.add(waiter);
      this.#start();
    });
  }

  /** How many devices are waiting on this replica (for /metrics and tests). */
  get waiting(): number {
    return this.#waiters.size;
  }

  #start() {
    if (this.#timer) return;
    this.#timer = setInterval(() => void this.#read(), this.pollMs);
    this.#timer.unref?.();
  }

  #stop() {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** One read at a time, shared by everyone asking meanwhile. */
  #read(): Promise<void> {
    this.#reading ??= this.storage
      .getLatest("timestamp")
      .then((rec) => {
        if (rec && rec.version > this.#version) this.#version = rec.version;
        for (const w of [...this.#waiters]) if (this.#version > w.after) w.resolve(this.#version);
      })
      .catch(() => {
        // the database is away for a moment: waiters keep waiting, the next tick tries again
      })
      .finally(() => (this.#reading = undefined));
    return this.#reading;
  }
}
