/**
 * A read cache in front of a TufStorage: every check-in reads
 * timestamp.json, so the latest record of each role is kept for a second
 * (fresh at once after a local write; other gateways' writes show within the
 * TTL) and fixed versions, which never change, are kept outright.
 *
 * The TTL runs on the monotonic clock: on the wall clock a replica whose time stepped back an
 * hour served its cached timestamp.json for that hour, older than what another replica served,
 * and a device that had seen the newer one refused it as a replay.
 *
 * @module
 */
import { TufVersionConflictError, type RoleName, type TufRecord, type TufStorage } from "../ota/storage.ts";

export class CachedTufStorage implements TufStorage {
  readonly #inner: TufStorage;
  readonly #ttlMs: number;
  /** Each role's latest record and until when (performance.now() ms) it is served without a read. */
  readonly #latest = new Map<RoleName, { rec: TufRecord | undefined; until: number }>();
  readonly #versions = new Map<string, TufRecord>();

  constructor(inner: TufStorage, ttlMs = 1000) {
    this.#inner = inner;
    this.#ttlMs = ttlMs;
  }

  /** The latest record of `role` when the cache holds it fresh (`{ rec }`), else undefined: read it with getLatest. */
  latestNow(role: RoleName): { rec: TufRecord | undefined } | undefined {
    const hit = this.#latest.get(role);
    return hit && hit.until > performance.now() ? hit : undefined;
  }

  async getLatest(role: RoleName) {
    const hit = this.latestNow(role);
    if (hit) return hit.rec;
    const rec = await this.#inner.getLatest(role);
    this.#latest.set(role, { rec, until: performance.now() + this.#ttlMs });
    return rec;
  }

  async get(role: RoleName, version: number) {
    const key = `${role}/${version}`;
    const hit = this.#versions.get(key);
    if (hit) return hit;
    const rec = await this.#inner.get(role, version);
    if (rec) {
      if (this.#versions.size > 1000) this.#versions.clear();
      this.#versions.set(key, rec);
    }
    return rec;
  }

  async put(records: TufRecord[]) {
    try {
      await this.#inner.put(records);
    } finally {
      // After a write (or a conflict: someone else wrote), read through again.
      this.#latest.clear();
    }
  }
}

export { TufVersionConflictError };
