/**
 * Publish and admin tokens by the hash of their secret (or by id, for the
 * registry tokens they obtained), cached for a few seconds so an API or
 * registry request costs no database read. Revocation through this gateway
 * clears the cache at once, and a row read while it happened answers the request
 * that asked but is not kept; another gateway sharing the database sees it
 * within the TTL, as with device revocation (gateway/devices/cache.ts), and
 * like it the TTL runs on the monotonic clock, so a step of the wall clock
 * neither stretches nor cuts it. Whether a token has expired is wall time
 * (apiTokenUsable), read at each use.
 *
 * @module
 */
import type { ApiTokenRow, Store } from "../store/types.ts";

interface Entry {
  row: ApiTokenRow | undefined;
  /** performance.now() ms. */
  until: number;
}

export class ApiTokenCache {
  readonly #store: Store;
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #byHash = new Map<string, Entry>();
  readonly #byId = new Map<string, Entry>();
  /** Bumped by invalidate(): a read begun before it may hold the row as it was, and is not cached. */
  #generation = 0;

  constructor(store: Store, opts: { ttlMs?: number; max?: number } = {}) {
    this.#store = store;
    this.#ttlMs = opts.ttlMs ?? 5000;
    this.#max = opts.max ?? 10_000;
  }

  byHash(secretHash: string): Promise<ApiTokenRow | undefined> {
    return this.#get(this.#byHash, secretHash, () => this.#store.getApiTokenByHash(secretHash));
  }

  byId(id: string): Promise<ApiTokenRow | undefined> {
    return this.#get(this.#byId, id, () => this.#store.getApiToken(id));
  }

  /** After a revocation: forget everything (revocations are rare, lookups are cheap). */
  invalidate() {
    this.#byHash.clear();
    this.#byId.clear();
    this.#generation++;
  }

  async #get(map: Map<string, Entry>, key: string, load: () => Promise<ApiTokenRow | undefined>) {
    const now = performance.now();
    const hit = map.get(key);
    if (hit && hit.until > now) return hit.row;
    const generation = this.#generation;
    const row = await load();
    if (generation !== this.#generation) return row;
    // Unknown keys are cached too (a flood of bogus tokens costs one read each per TTL), but bounded.
    if (map.size >= this.#max) map.delete(map.keys().next().value!);
    map.delete(key);
    map.set(key, { row, until: now + this.#ttlMs });
    return row;
  }
}

/** True if the token may be used at `now` (not revoked, not expired). */
export const apiTokenUsable = (row: ApiTokenRow | undefined, now = Date.now()): row is ApiTokenRow =>
  row !== undefined && row.revokedAt === null && Date.parse(row.expiresAt) > now;
