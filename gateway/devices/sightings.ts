/**
 * Coalesces what check-ins tell us (last seen, tags, current target, apps)
 * and writes it once a second in batches (CHUNK devices each), so polling
 * costs no write per request. A crash loses at most one interval of last-seen times: nothing a
 * device was promised.
 *
 * A check-in only stores the header values as they came, in the device's
 * pending entry (one object per device per interval, reused); timestamps and
 * lists are built once per device at flush.
 *
 * A read that shows devices (settled()) writes first only what it must not miss: a check-in
 * that says something the device's row does not (its first, a new target, tags or apps), or one
 * the flushes left older than two intervals. A device seen before that checks in again with the
 * same values only moves its last-seen time, which the next flush writes within the interval;
 * writing it for the read too cost a write transaction at every dashboard refresh (every 5 s per
 * open device list or page), as an active fleet always has check-ins pending.
 *
 * @module
 */
import { isTag, readCheckinList } from "../../lib/api/index.ts";
import { isNoSpace } from "../../lib/fs/why.ts";
import { StoreUnavailableError, type DeviceRow, type Sighting, type Store } from "../store/types.ts";

/** What one device's check-ins said since the last flush (raw header values). */
interface Pending {
  /** The last check-in's time (its last_seen), wall clock. */
  at: number;
  /** When the entry was made, monotonic: how long it has waited for a flush. */
  since: number;
  tags: string | undefined;
  target: string | undefined;
  apps: string | undefined;
  /** One of them says something the device's row did not when it came (see {@link Sightings.note}). */
  news: boolean;
}

/** What a check-in is compared with: the device's row as the check-in found it (cached up to a few seconds). */
export type KnownDevice = Pick<DeviceRow, "lastSeen" | "tags" | "currentTarget" | "apps">;

/**
 * Whether a check-in's headers say something `known` does not show: its first check-in, or a
 * target, tags or apps that differ (compared as fioup sends them, comma-joined: another spelling
 * of the same list counts as news, which costs a read a write, nothing more).
 */
function isNews(known: KnownDevice | undefined, tags: string | null | undefined, target: string | null | undefined, apps: string | null | undefined) {
  if (!known || known.lastSeen === null) return true;
  if (validTarget(target) && target !== known.currentTarget) return true;
  if (tags != null && tags !== known.tags.join(",")) return true;
  return apps != null && apps !== (known.apps ?? []).join(",");
}

/**
 * Devices written per transaction at flush. On SQLite each transaction runs on the writer thread
 * between event batches, and POST /events' next group commit waits behind it: a device's row and
 * its two last_seen indexes cost about 20 µs, so 2,048 devices held every POST for about 40 ms,
 * which was a check-in's p99 kept alive (bench/gateway-checkin, 2026-12-04 20:30 UTC: check-in p99
 * 35-38 ms with 256 against 50-56 with 2,048, the same rate). More transactions cost a commit
 * each (an fsync of about 0.25 ms): at 10,000 devices a second, 40 a second.
 */
const CHUNK = 256;
// A device-supplied target name: bounded, and nothing an operator's terminal would act on (as the lists: lib/api/device.ts).
// eslint-disable-next-line no-control-regex
const TARGET = /^[^\s\u0000-\u001f\u007f-\u009f]{1,256}$/;

const validTarget = (v: string | null | undefined): v is string => !!v && TARGET.test(v);

export class Sightings {
  readonly #store: Store;
  readonly #intervalMs: number;
  #pending = new Map<string, Pending>();
  /** Pending entries with news; when the oldest pending entry was noted, monotonic (Infinity: none). */
  #news = 0;
  #oldest = Infinity;
  /** Entries with news in the write under way. */
  #newsWriting = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #flushing: Promise<void> = Promise.resolve();

  /**
   * @param onNoSpace Told of a flush refused for want of disk space (gateway/disk-full.ts says it
   *   once), instead of a line per flush.
   */
  constructor(store: Store, intervalMs = 1000, onNoSpace?: (err: unknown) => void) {
    this.#store = store;
    this.#intervalMs = intervalMs;
    if (intervalMs > 0) {
      // An unreachable database is logged once by the store, a full disk once by onNoSpace, not at every flush; the sightings wait for the next.
      const failed = (e: unknown) => {
        if (e instanceof StoreUnavailableError) return;
        if (onNoSpace && isNoSpace(e)) onNoSpace(e);
        else console.error("gateway: cannot record last-seen:", e);
      };
      this.#timer = setInterval(() => void this.flush().catch(failed), intervalMs);
      this.#timer.unref?.();
    }
  }

  /**
   * Notes a check-in; the values are fioup's x-ats-tags, x-ats-target and x-ats-dockerapps headers
   * (null or undefined = unchanged). `known`: the device's row as the check-in found it; without
   * it the check-in counts as news, which a read writes first.
   */
  note(uuid: string, tags: string | null | undefined, target: string | null | undefined, apps: string | null | undefined, known?: KnownDevice) {
    const at = Date.now();
    const p = this.#pending.get(uuid);
    if (p) {
      p.at = at;
      if (tags != null) p.tags = tags;
      if (validTarget(target)) p.target = target;
      if (apps != null) p.apps = apps;
      if (!p.news && isNews(known, tags, target, apps)) {
        p.news = true;
        this.#news++;
      }
    } else {
      const news = isNews(known, tags, target, apps);
      const since = performance.now(); // how long it waits: monotonic, as a wall-clock step must not hold it back
      this.#pending.set(uuid, { at, since, tags: tags ?? undefined, target: validTarget(target) ? target : undefined, apps: apps ?? undefined, news });
      if (news) this.#news++;
      if (since < this.#oldest) this.#oldest = since;
    }
  }

  get pending() {
    return this.#pending.size;
  }

  /**
   * Writes everything noted so far. A failed write rejects this call only: what it did not write
   * is kept for the next flush (unless a newer check-in replaced it), and later flushes run.
   */
  flush(): Promise<void> {
    const run = this.#flushing.then(() => this.#write());
    this.#flushing = run.catch(() => {});
    return run;
  }

  async #write(): Promise<void> {
    if (!this.#pending.size) return;
    const pending = this.#pending;
    this.#pending = new Map();
    this.#newsWriting = this.#news;
    this.#news = 0;
    this.#oldest = Infinity;
    try {
      // In chunks, yielding between them: SQLite writes on the event loop, and one transaction of
      // thousands of updates would hold every request waiting behind it.
      let batch: Sighting[] = [];
      for (const [uuid, p] of pending) {
        const s: Sighting = { uuid, at: new Date(p.at).toISOString() };
        // Only what could be a target tag: a device may choose its tags (its token allowed it), not make up others;
        // the store keeps them as the tags it reports following (reported_tags) and sets its tags only where allowed.
        if (p.tags !== undefined) s.tags = readCheckinList(p.tags, isTag);
        if (p.target !== undefined) s.currentTarget = p.target;
        if (p.apps !== undefined) s.apps = readCheckinList(p.apps);
        batch.push(s);
        if (batch.length === CHUNK) {
          await this.#store.recordSightings(batch);
          batch = [];
          await new Promise((r) => setImmediate(r));
        }
      }
      await this.#store.recordSightings(batch);
    } catch (err) {
      for (const [uuid, p] of pending) {
        const newer = this.#pending.get(uuid);
        if (newer) {
          // A newer check-in replaced it; the news it carried is still unwritten.
          if (p.news && !newer.news) {
            newer.news = true;
            this.#news++;
          }
          continue;
        }
        this.#pending.set(uuid, p);
        if (p.news) this.#news++;
        if (p.since < this.#oldest) this.#oldest = p.since;
      }
      throw err;
    } finally {
      this.#newsWriting = 0;
    }
  }

  /**
   * For a read that shows devices (a device list, a device's page): it then agrees with every
   * check-in noted so far, last-seen times within one interval. What it must not miss is written
   * first: a check-in with news (a device's first, a new target, tags or apps; the write of such
   * a check-in under way is waited for), or one older than two intervals (no timer, or flushes
   * behind). Otherwise nothing is written: the next flush moves the last-seen times. A write that
   * fails (a full disk, the database away) does not fail the read: its times are then up to a
   * flush old, and the flush's own error is said where flushes are; a list that fails at the
   * moment an operator needs it helps no one.
   */
  settled(): Promise<void> {
    // Two intervals, not one: the timer's flush takes what an interval noted a few ms past it.
    if (this.#news > 0 || performance.now() - this.#oldest >= 2 * this.#intervalMs) return this.flush().catch(() => {});
    return this.#newsWriting > 0 ? this.#flushing : Promise.resolve();
  }

  async stop() {
    if (this.#timer) clearInterval(this.#timer);
    await this.flush();
  }
}
