/**
 * Coalesces what check-ins tell us (last seen, tags, current target, apps)
 * and writes it once a second in one batch, so polling costs no write per
 * request. A crash loses at most one interval of last-seen times: nothing a
 * device was promised.
 *
 * @module
 */
import type { Sighting, Store } from "../store/types.ts";

const MAX_ITEMS = 32;
// eslint-disable-next-line no-control-regex
const ITEM = /^[^\s,\u0000-\u001f\u007f-\u009f]{1,128}$/;
// eslint-disable-next-line no-control-regex
const TARGET = /^[^\s\u0000-\u001f\u007f-\u009f]{1,256}$/;

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
    // Header lists are device-supplied: bounded, and no item an operator's terminal would act on.
    const list = (v: string) =>
      v
        .split(",")
        .map((t) => t.trim())
        .filter((t) => ITEM.test(t))
        .slice(0, MAX_ITEMS);
    if (headers.tags != null) s.tags = list(headers.tags);
    if (headers.target && TARGET.test(headers.target)) s.currentTarget = headers.target;
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
