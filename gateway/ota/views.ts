/**
 * Signed views of the TUF repository (docs/signed-views.md): what one device may see while a
 * rollout holds a version back. A view is derived from the main chain at the same versions:
 * targets' = the main targets.json minus the entries of hidden versions, with `custom.rollout`
 * added to annotated ones; snapshot' pins targets' and timestamp' pins snapshot' by length and
 * hash. Each is signed with the repository's own online targets, snapshot and timestamp keys,
 * so a device verifies a view exactly as it verifies the main chain.
 *
 * A view can only drop entries or add `custom.rollout`: every target a device can see was
 * published (signed) into the main targets.json. Ed25519 signatures are deterministic and the
 * inputs are the stored main records, so every replica makes the same bytes without storing
 * them; they are cached here per (role, version, view key), bounded in bytes. PinnedViews keeps,
 * per device and for a short while, the view its last timestamp' was made in, so that the rest
 * of its check gets the files that timestamp' pinned even if its view changes meanwhile.
 *
 * @module
 */
import type { TargetEntry } from "../../lib/api/target.ts";
import type { TufKeyPair } from "../../lib/tuf/keys.ts";
import { metaFileFor, signJson } from "../../lib/tuf/metadata.ts";
import type { TufRecord } from "./storage.ts";

/** What a rollout tells the devices of its released waves about its target: the entry's `custom.rollout`, as is. */
export interface RolloutAnnotation {
  /** The rollout id. */
  rollout: string;
  /** The maintenance window, as given to `rollouts create --window`. */
  window?: string;
  /** Longest an update lock may hold the install off, integer seconds. */
  maxHold?: number;
}

/**
 * One device's view: the versions it must not see and the annotations of the ones it may.
 * `key` names the content (the same key always means the same hideVersions and annotate);
 * `""` means nothing hidden or annotated: the main chain.
 */
export interface View {
  key: string;
  hideVersions: string[];
  annotate: Record<string, RolloutAnnotation>;
}

/** The main view: what admin access and devices outside any rollout see. */
export const MAIN_VIEW: View = Object.freeze({ key: "", hideVersions: [], annotate: {} });

/**
 * What a metadata request asks for, as far as its view goes: `"timestamp"` begins a device's
 * check (the view it gets is the one the rest of that check must be served); `"superseded"` is a
 * snapshot or targets version older than the latest, as a check asks for that began before the
 * chain moved on (the version its timestamp' pinned); `"current"` is anything else.
 */
export type ViewAsked = "timestamp" | "superseded" | "current";

/**
 * How a request finds its view, given the main timestamp version the answer builds on (so the
 * caller can make sure its rollout state is at least as new as that timestamp) and what it asks for.
 */
export type ViewLookup = (timestampVersion: number, asked: ViewAsked) => View | undefined | Promise<View | undefined>;

/**
 * Per device, the view its last timestamp' was made with, for a short while: a check that got
 * timestamp' of view V fetches the snapshot' and targets' it pinned a few milliseconds later,
 * and if the device's view changed meanwhile (a wave released, a rollout halted) only V's files
 * match those pins (docs/signed-views.md, "One view per check").
 *
 * Kept in two generations of one map each, turned every `spanMs`: an entry lives at least one
 * span and less than two, and turning drops the older generation whole, so there is no sweep
 * and no per-entry time. The map holds the uuid and a pointer to a View the rollout cache already
 * shares among devices: a remember is one map set, without allocation once the device is in the
 * current generation. Memory: the devices that fetched a timestamp in the last two spans.
 */
export class PinnedViews {
  readonly #spanMs: number;
  readonly #now: () => number;
  #current = new Map<string, View>();
  #previous = new Map<string, View>();
  #since: number;

  /** `now` must not go back (the default is monotonic). */
  constructor(spanMs = 30_000, now: () => number = () => performance.now()) {
    this.#spanMs = spanMs;
    this.#now = now;
    this.#since = now();
  }

  /** The view a device was just served its timestamp' in. */
  remember(uuid: string, view: View): void {
    this.#turn();
    this.#current.set(uuid, view);
  }

  /** The view of the device's last timestamp', if it was served within the last span or two. */
  recall(uuid: string): View | undefined {
    this.#turn();
    return this.#current.get(uuid) ?? this.#previous.get(uuid);
  }

  /** Records held, for tests (a device recorded in both generations counts twice). */
  get size(): number {
    return this.#current.size + this.#previous.size;
  }

  /** At a span's end the current generation becomes the previous one; after two, both go. */
  #turn() {
    const passed = this.#now() - this.#since;
    if (passed < this.#spanMs) return;
    this.#previous = passed < 2 * this.#spanMs ? this.#current : new Map();
    this.#current = new Map();
    this.#since += passed - (passed % this.#spanMs); // on the span grid: the previous generation is under two spans old
  }
}

/** What views are made from: the stored main chain and the keys that sign it. */
export interface ViewSource {
  /** A stored main record. */
  record(role: "snapshot" | "targets", version: number): Promise<TufRecord | undefined>;
  /** The held keys the current root trusts for `role`. @throws {SigningKeyUnavailableError} */
  keys(role: "timestamp" | "snapshot" | "targets"): Promise<TufKeyPair[]>;
}

/** A view cannot be made: the main metadata it derives from is gone or malformed. Devices get an error, never the main chain. */
export class ViewUnavailableError extends Error {
  override name = "ViewUnavailableError";
  constructor(role: string, version: number, why: string) {
    super(`Cannot make a view of ${role}.json v${version}: ${why}`);
  }
}

export interface SignedViewsOptions {
  /** Bytes of view metadata kept in memory (default 64 MiB); the oldest entries go first. */
  maxBytes?: number;
  /** Entries kept at most (default 4096). */
  maxEntries?: number;
}

/** A view's file: `bytes` undefined when the view changes nothing in it (serve the main record). */
interface Made {
  bytes: Uint8Array | undefined;
}

const encoder = new TextEncoder();
type ViewRole = "timestamp" | "snapshot" | "targets";

/**
 * The signed metadata of views, made on demand from the main chain and cached.
 *
 * @example
 * ```ts
 * const views = new SignedViews(source);
 * const bytes = await views.bytes(targetsRecord, { key: "r1:3:out", hideVersions: ["42"], annotate: {} });
 * ```
 */
export class SignedViews {
  readonly #source: ViewSource;
  readonly #maxBytes: number;
  readonly #maxEntries: number;
  /** Made views (and the ones being made), oldest first: eviction follows insertion, as old versions go out of use. */
  readonly #cache = new Map<string, Made | Promise<Made>>();
  readonly #sizes = new Map<string, number>();
  /** Per view key, the timestamp it was last served with: a hit costs one map lookup. */
  readonly #last = new Map<string, { rec: TufRecord; bytes: Uint8Array }>();
  #bytes = 0;

  constructor(source: ViewSource, opts: SignedViewsOptions = {}) {
    this.#source = source;
    this.#maxBytes = opts.maxBytes ?? 64 << 20;
    this.#maxEntries = opts.maxEntries ?? 4096;
  }

  /** Cached entries and their bytes (for tests and /metrics). */
  get stats(): { entries: number; bytes: number } {
    return { entries: this.#cache.size, bytes: this.#bytes };
  }

  /**
   * The view's bytes of a main timestamp, snapshot or targets record (`rec` itself when the
   * view changes nothing in it). Synchronous when the view is cached: this is on every check-in.
   *
   * @throws {SigningKeyUnavailableError} A key the view must be signed with is offline.
   * @throws {ViewUnavailableError} The main metadata the view derives from is gone.
   */
  bytes(rec: TufRecord, view: View): Uint8Array | Promise<Uint8Array> {
    if (!view.key || rec.role === "root") return encoder.encode(rec.json);
    // Most check-ins ask for the latest timestamp, the same record object as the last check-in of this view.
    const last = this.#last.get(view.key);
    if (last?.rec === rec) return last.bytes;
    const made = this.#made(rec, view);
    if (!(made instanceof Promise)) {
      const bytes = made.bytes ?? encoder.encode(rec.json);
      if (rec.role === "timestamp") this.#remember(view.key, rec, bytes);
      return bytes;
    }
    return made.then((m) => m.bytes ?? encoder.encode(rec.json));
  }

  #remember(key: string, rec: TufRecord, bytes: Uint8Array) {
    if (this.#last.size >= 1024 && !this.#last.has(key)) this.#last.clear();
    this.#last.set(key, { rec, bytes });
  }

  /** The view of one main record, from the cache or made now (one computation per key, shared). */
  #made(rec: TufRecord, view: View): Made | Promise<Made> {
    const id = `${rec.role}/${rec.version}/${view.key}`;
    const hit = this.#cache.get(id);
    if (hit) return hit;
    const p = this.#make(rec as TufRecord & { role: ViewRole }, view);
    this.#cache.set(id, p);
    p.then(
      (m) => this.#keep(id, p, m),
      () => this.#cache.get(id) === p && this.#cache.delete(id), // not cached: the next request tries again
    );
    return p;
  }

  #keep(id: string, p: Promise<Made>, made: Made) {
    if (this.#cache.get(id) !== p) return; // evicted while being made
    this.#cache.set(id, made);
    const size = made.bytes?.byteLength ?? 0;
    this.#sizes.set(id, size);
    this.#bytes += size;
    for (const [old] of this.#cache) {
      if (this.#bytes <= this.#maxBytes && this.#cache.size <= this.#maxEntries) break;
      if (old === id) continue;
      this.#cache.delete(old);
      this.#bytes -= this.#sizes.get(old) ?? 0;
      this.#sizes.delete(old);
    }
  }

  async #make(rec: TufRecord & { role: ViewRole }, view: View): Promise<Made> {
    if (rec.role === "targets") return this.#targets(rec, view);
    const doc = JSON.parse(rec.json) as { signed: { meta: Record<string, { version: number }> } };
    const child = rec.role === "timestamp" ? "snapshot" : "targets";
    const pinned = doc.signed.meta[`${child}.json`];
    if (!pinned) throw new ViewUnavailableError(rec.role, rec.version, `it pins no ${child}.json`);
    const childRec = await this.#source.record(child, pinned.version);
    // Pruned meanwhile: the view cannot be made; refuse rather than fall back to the main chain.
    if (!childRec) throw new ViewUnavailableError(rec.role, rec.version, `${child}.json v${pinned.version} is no longer stored`);
    const made = await this.#made(childRec, view);
    if (!made.bytes) return { bytes: undefined };
    const meta = { ...doc.signed.meta, [`${child}.json`]: metaFileFor(made.bytes, pinned.version).toJSON() };
    return { bytes: signJson({ ...doc.signed, meta }, await this.#source.keys(rec.role)) };
  }

  async #targets(rec: TufRecord, view: View): Promise<Made> {
    const doc = JSON.parse(rec.json) as { signed: { targets?: Record<string, TargetEntry> } };
    const hidden = new Set(view.hideVersions);
    const out: Record<string, TargetEntry> = {};
    let changed = false;
    for (const [name, entry] of Object.entries(doc.signed.targets ?? {})) {
      const version = String(entry?.custom?.version ?? "");
      if (hidden.has(version)) {
        changed = true;
        continue;
      }
      const a = Object.hasOwn(view.annotate, version) ? view.annotate[version] : undefined;
      if (a) {
        changed = true;
        const custom = { ...entry.custom, rollout: rolloutField(a) }; // TargetCustom takes extra fields
        out[name] = { ...entry, custom };
      } else out[name] = entry;
    }
    if (!changed) return { bytes: undefined };
    return { bytes: signJson({ ...doc.signed, targets: out }, await this.#source.keys("targets")) };
  }
}

/** The `custom.rollout` object for an annotation: its set fields, in one order (the bytes must not depend on who built it). */
const rolloutField = (a: RolloutAnnotation): RolloutAnnotation => ({
  rollout: a.rollout,
  ...(a.window !== undefined ? { window: a.window } : {}),
  ...(a.maxHold !== undefined ? { maxHold: a.maxHold } : {}),
});
