/**
 * Coalesces what check-ins tell us (last seen, tags, current target, apps)
 * and writes it once a second in one batch, so polling costs no write per
 * request. A crash loses at most one interval of last-seen times: nothing a
 * device was promised.
 *
 * @module
 */
import type { Sighting, Store } from "../store/types.ts";

export class Sightings {
  readonly #store: Store;
  #pending = new Map<string, Sighting>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #flushing: Promise<void> = Promise.resolve();

  constructor(store: Store, intervalMs = 1000) {
    this.#store = store;
    if (intervalMs > 0) {
      this.#timer = setInterval(() => void this.flush().catch((e) => console.error("gateway: cannot record last-seen:", e)), intervalMs);
      this.#timer.unref?.();
    }
  }

  /** Notes a check-in; headers are fioup's x-ats-* values (absent = unchanged). */
  note(uuid: string, headers: { tags?: string | null; target?: string | null; apps?: string | null }) {
    const s: Sighting = { uuid, at: new Date().toISOString() };
    const list = (v: string) => v.split(",").map((t) => t.trim()).filter(Boolean);
    if (headers.tags != null) s.tags = list(headers.tags);
    if (headers.target) s.currentTarget = headers.target;
    if (headers.apps != null) s.apps = list(headers.apps);
    const prev = this.#pending.get(uuid);
    this.#pending.set(uuid, prev ? { ...prev, ...s } : s);
  }

  get pending() {
    return this.#pending.size;
  }

  /** Writes everything noted so far. */
  flush(): Promise<void> {
    this.#flushing = this.#flushing.then(async () => {
      if (!this.#pending.size) return;
      const batch = [...this.#pending.values()];
      this.#pending = new Map();
      await this.#store.recordSightings(batch);
    });
    return this.#flushing;
  }

  async stop() {
    if (this.#timer) clearInterval(this.#timer);
    await this.flush();
  }
}
