/**
 * Device rows by uuid, cached for a few seconds so a check-in costs no
 * database read. Revocation and re-registration through this gateway
 * invalidate at once; another gateway sharing the database sees them within
 * the TTL.
 *
 * Expired entries are dropped as new ones arrive, not kept until the size cap: without that,
 * every device ever seen kept its row (about 0.7 KB) until 200,000 devices had been seen, which
 * for a replica holding tens of thousands of push waits was tens of MB for nothing. Every entry
 * lives the same TTL, so the order of insertion is the order of expiry: a queue beside the Map
 * holds the entries in that order and the expired ones leave from its front. Not the Map's own
 * order: a Map keeps a deleted entry's slot until it rehashes, so walking it from the front after
 * many deletes steps over every one of them again (measured: 20 µs per insert at 10,000 devices,
 * against under 1 µs with the queue).
 *
 * The TTL is a duration, so it runs on the monotonic clock: on the wall clock a replica whose
 * time NTP stepped back an hour kept every row it held for that hour, a revocation through
 * another replica included (its device still passed mTLS here); one stepped forward dropped
 * them all at once.
 *
 * Misses are read together: those of one event-loop turn (the requests read from every socket
 * that turn) wait for its end and go to the store as one read (Store.getDevices). A fleet that
 * polls every few minutes misses on almost every check-in, since a row lives seconds. On SQLite a
 * lookup right after another connection's commit (the writer thread commits every few
 * milliseconds under load) reads its B-tree pages again, its upper pages included, which one
 * statement for the batch reads once: measured with bench/gateway-checkin/device-lookup.ts, after
 * a commit, 31 µs a lookup alone, 15 in fours, 10 in sixteens. On PostgreSQL it is one round trip
 * instead of one per device. A row read while the device is invalidated (a revocation through
 * this replica, whose answer may predate it) is handed to the requests that asked, which arrived
 * before the revocation, but is not kept.
 *
 * @module
 */
import type { DeviceRow, Store } from "../store/types.ts";

interface Entry {
  readonly uuid: string;
  readonly row: DeviceRow | undefined;
  /** When the row goes stale (performance.now() ms). */
  readonly until: number;
}

export class DeviceCache {
  readonly #store: Store;
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #map = new Map<string, Entry>();
  /** Misses of this turn, read together at its end, each with the requests waiting for it. */
  #pending = new Map<string, PromiseWithResolvers<DeviceRow | undefined>>();
  /** The uuids of each read under way; invalidate() takes its uuid out, so its row is not kept. */
  readonly #reading = new Set<Set<string>>();
  /** Entries in insertion (= expiry) order from #head on; one no longer in the Map is skipped. */
  #queue: (Entry | undefined)[] = [];
  #head = 0;

  constructor(store: Store, opts: { ttlMs?: number; max?: number } = {}) {
    this.#store = store;
    this.#ttlMs = opts.ttlMs ?? 5000;
    this.#max = opts.max ?? 200_000;
  }

  /** The cached entry if still fresh, without a database read (the check-in fast path); else get(). */
  fresh(uuid: string): { readonly row: DeviceRow | undefined } | undefined {
    const hit = this.#map.get(uuid);
    return hit && hit.until > performance.now() ? hit : undefined;
  }

  /** The device's row, from the cache while fresh, else read with this turn's other misses. */
  async get(uuid: string): Promise<DeviceRow | undefined> {
    const hit = this.#map.get(uuid);
    if (hit && hit.until > performance.now()) return hit.row;
    let waiting = this.#pending.get(uuid);
    if (!waiting) {
      waiting = Promise.withResolvers();
      this.#pending.set(uuid, waiting);
      if (this.#pending.size === 1) setImmediate(() => void this.#read());
    }
    return waiting.promise;
  }

  /** Reads this turn's misses in one store read, keeps the rows and answers their requests. */
  async #read() {
    const batch = this.#pending;
    this.#pending = new Map();
    const keep = new Set(batch.keys());
    this.#reading.add(keep);
    let rows: Map<string, DeviceRow>;
    try {
      rows = await this.#store.getDevices([...batch.keys()]);
    } catch (err) {
      for (const w of batch.values()) w.reject(err);
      return;
    } finally {
      this.#reading.delete(keep);
    }
    const now = performance.now();
    this.#drop((e) => e.until <= now);
    for (const [uuid, w] of batch) {
      const row = rows.get(uuid);
      if (keep.has(uuid)) {
        if (this.#map.size >= this.#max) this.#drop(() => this.#map.size >= this.#max);
        const entry: Entry = { uuid, row, until: now + this.#ttlMs };
        this.#map.set(uuid, entry);
        this.#queue.push(entry);
      }
      w.resolve(row);
    }
  }

  /** Entries held now (fresh, or expired and not yet dropped). */
  get size(): number {
    return this.#map.size;
  }

  /** Drops entries from the front of the queue while `more` says so (amortized one per insert). */
  #drop(more: (e: Entry) => boolean) {
    const q = this.#queue;
    while (this.#head < q.length) {
      const e = q[this.#head]!;
      if (this.#map.get(e.uuid) !== e) {
        q[this.#head++] = undefined; // invalidated or replaced since: nothing to drop
        continue;
      }
      if (!more(e)) break;
      this.#map.delete(e.uuid);
      q[this.#head++] = undefined;
    }
    // The front's free slots are given back once they are half the queue.
    if (this.#head > 1024 && this.#head * 2 > q.length) {
      this.#queue = q.slice(this.#head);
      this.#head = 0;
    }
  }

  invalidate(uuid: string) {
    this.#map.delete(uuid);
    for (const keep of this.#reading) keep.delete(uuid);
  }
}
