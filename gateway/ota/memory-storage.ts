/**
 * In-memory {@link TufStorage} for tests and throwaway gateways.
 *
 * @module
 */
import type { RoleName, TufRecord, TufStorage } from "./storage.ts";
import { TufVersionConflictError } from "./storage.ts";

/**
 * Keeps every record in a Map; `put` is atomic because it checks everything before writing.
 *
 * @example
 * ```ts
 * const repo = await TufRepo.open({ storage: new MemoryTufStorage(), keysDir });
 * ```
 */
export class MemoryTufStorage implements TufStorage {
  readonly #records = new Map<string, TufRecord>();
  readonly #latest = new Map<RoleName, number>();

  async getLatest(role: RoleName): Promise<TufRecord | undefined> {
    const v = this.#latest.get(role);
    return v === undefined ? undefined : this.#records.get(`${role}/${v}`);
  }

  async get(role: RoleName, version: number): Promise<TufRecord | undefined> {
    return this.#records.get(`${role}/${version}`);
  }

  async put(records: TufRecord[]): Promise<void> {
    const seen = new Set<string>();
    for (const r of records) {
      const key = `${r.role}/${r.version}`;
      if (this.#records.has(key) || seen.has(key)) throw new TufVersionConflictError(r.role, r.version);
      seen.add(key);
    }
    for (const r of records) {
      this.#records.set(`${r.role}/${r.version}`, { ...r });
      if (r.version > (this.#latest.get(r.role) ?? 0)) this.#latest.set(r.role, r.version);
    }
  }

  async deleteBefore(role: Exclude<RoleName, "root">, version: number): Promise<number> {
    let n = 0;
    for (const [key, r] of this.#records) {
      if (r.role === role && r.version < version) {
        this.#records.delete(key);
        n++;
      }
    }
    return n;
  }
}
