/**
 * Event retention: device events older than `gateway serve --keep-events` (default 180 days) are
 * removed, so the database does not grow for ever. An event is about 0.4 KB and one update makes
 * about 8 (docs/capacity.md): a million devices updating weekly add about 3 GB a week, which
 * nothing removed before this, and which ends in a full disk (gateway/disk-full.ts).
 *
 * What goes: the events themselves (a device's timeline in the dashboard and `devices show`, and
 * the rows `/admin/devices/:uuid/events` lists), nothing else. A device's status, target, apps and
 * last-seen live on its own row; a rollout keeps its own decisions (rollout_events), and a rollout
 * running longer than the retention is not expected (its waves take hours or days).
 *
 * One replica does it (the signer: replicas share the database), once an hour and soon after it
 * takes the role, in chunks of {@link CHUNK} oldest events with a pause between them, so device
 * writes are never held behind one long delete (on SQLite it runs on the writer thread between
 * event batches). Each run that removed something says how many in the log.
 *
 * @module
 */
import { isNoSpace } from "../lib/fs/why.ts";
import { StoreUnavailableError, type Store } from "./store/types.ts";

/** Events deleted per statement. */
export const CHUNK = 5_000;
/** The default of --keep-events. */
export const DEFAULT_KEEP_EVENTS_DAYS = 180;
export const DEFAULT_KEEP_EVENTS = `${DEFAULT_KEEP_EVENTS_DAYS}d`;

export interface EventRetentionOptions {
  store: Store;
  /** How long an event is kept, in ms. */
  keepMs: number;
  /** The --keep-events value as given, for the log line. */
  shown: string;
  /** Runs only while true (the signer replica). */
  isLeader: () => boolean;
  log: (line: string) => void;
  /** How often a run starts (default an hour). */
  intervalMs?: number;
  /** The pause between chunks (default 100 ms). */
  pauseMs?: number;
}

export class EventRetention {
  readonly #o: EventRetentionOptions;
  #timer: ReturnType<typeof setInterval> | undefined;
  #running: Promise<number> | undefined;
  #stopped = false;

  constructor(o: EventRetentionOptions) {
    this.#o = o;
  }

  start(): void {
    this.#timer = setInterval(() => void this.runNow(), this.#o.intervalMs ?? 3_600_000);
    this.#timer.unref();
  }

  /** A run now unless one is under way or this replica is not the signer; resolves with how many events it removed. */
  runNow(): Promise<number> {
    if (this.#stopped || !this.#o.isLeader()) return Promise.resolve(0);
    return (this.#running ??= this.#run().finally(() => (this.#running = undefined)));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    await this.#running;
  }

  async #run(): Promise<number> {
    const before = new Date(Date.now() - this.#o.keepMs).toISOString();
    let removed = 0;
    try {
      for (;;) {
        const n = await this.#o.store.pruneEvents(before, CHUNK);
        removed += n;
        // Until a chunk removes none: one that removed fewer than CHUNK may have met events kept for
        // now (stamped later than their neighbours) with old ones behind. Each round removes one at
        // least, so the run ends; a call reads CHUNK events and those stamped in the future.
        if (n === 0 || this.#stopped || !this.#o.isLeader()) break;
        await Bun.sleep(this.#o.pauseMs ?? 100);
      }
    } catch (e) {
      // An unreachable database is logged once by the store, a full disk once by disk-full.ts: the next run tries again.
      if (!(e instanceof StoreUnavailableError) && !isNoSpace(e)) this.#o.log(`gateway: cannot remove old events: ${(e as Error).message}`);
    }
    if (removed) this.#o.log(`gateway: removed ${removed} events received before ${before} (--keep-events ${this.#o.shown})`);
    return removed;
  }
}
