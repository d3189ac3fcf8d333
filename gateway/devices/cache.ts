/**
 * Device rows by uuid, cached for a few seconds so a check-in costs no
 * database read. Revocation and re-registration through this gateway
 * invalidate at once; another gateway sharing the database sees them within
 * the TTL.
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
    if (this.#map.size >= this.#max) this.#map.delete(this.#map.keys().next().value!);
    this.#map.delete(uuid);
    this.#map.set(uuid, { row, until: now + this.#ttlMs });
    return row;
  }

  invalidate(uuid: string) {
    this.#map.delete(uuid);
  }
}
