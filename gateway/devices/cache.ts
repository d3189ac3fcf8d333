/**
 * Device rows by uuid, cached for a few seconds so a check-in costs no
 * database read. Revocation and re-registration through this gateway
 * invalidate at once; another gateway sharing the database sees them within
 * the TTL.
 *
 * Expired entries are dropped as new ones arrive, not kept until the size cap: every entry
 * lives the same TTL and a miss re-inserts its uuid at the end, so the Map's order is expiry
 * order and the stale ones are always at its front. Without that, every device ever seen kept
 * its row (about 0.7 KB) until 200,000 devices had been seen, which for a replica holding tens
 * of thousands of push waits was tens of MB for nothing.
 *
 * @module
 */
import type { DeviceRow, Store } from "../store/types.ts";

interface Entry {
  row: DeviceRow | undefined;
  until: number;
}

export class DeviceCache {
  readonly #store: Store;
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #map = new Map<string, Entry>();

  constructor(store: Store, opts: { ttlMs?: number; max?: number } = {}) {
    this.#store = store;
    this.#ttlMs = opts.ttlMs ?? 5000;
    this.#max = opts.max ?? 200_000;
  }

  /** The cached entry if still fresh, without a database read (the check-in fast path); else get(). */
  fresh(uuid: string): { readonly row: DeviceRow | undefined } | undefined {
    const hit = this.#map.get(uuid);
    return hit && hit.until > Date.now() ? hit : undefined;
  }

  async get(uuid: string): Promise<DeviceRow | undefined> {
    const now = Date.now();
    const hit = this.#map.get(uuid);
    if (hit && hit.until > now) return hit.row;
    const row = await this.#store.getDevice(uuid);
    this.#map.delete(uuid);
    this.#dropExpired(Date.now());
    if (this.#map.size >= this.#max) this.#map.delete(this.#map.keys().next().value!);
    this.#map.set(uuid, { row, until: Date.now() + this.#ttlMs });
    return row;
  }

  /** Entries held now (fresh, or expired and not yet dropped). */
  get size(): number {
    return this.#map.size;
  }

  /** Drops the expired entries at the front (amortized one per insert). */
  #dropExpired(now: number) {
    for (const [uuid, e] of this.#map) {
      if (e.until > now) return;
      this.#map.delete(uuid);
    }
  }

  invalidate(uuid: string) {
    this.#map.delete(uuid);
  }
}
