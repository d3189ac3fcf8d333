/**
 * Each device's view of the targets while rollouts are active, answered from memory: it is asked
 * on every check-in. The cache holds the active rollouts and, per rollout, uuid -> wave (membership
 * never changes after creation, so members are read once per rollout). refresh() reloads it when an
 * active rollout's revision changed (one small query otherwise). It is called when a timestamp
 * version newer than the cache appears (by the signed-views routes before they serve it, and
 * after a transition on this replica, once its new version is signed): a view then changes only
 * together with the metadata versions, never under a version a device is still fetching, and no
 * replica signs a new timestamp over an old view. (`pollMs` adds a background reload; off in the
 * gateway for that reason.)
 *
 * A device sees a rollout's version annotated (custom.rollout: id, window, max hold) when it is a
 * member of a released wave; otherwise the version is hidden from it. While a rollout is halted,
 * its released members that have not succeeded (still pending: not installed yet, held by a
 * window or a lock; or failed: timed out, as an offline device does, or failed to install or to
 * come up healthy) no longer see it either: a halt stops installs that have not happened. A
 * failed member is withheld too because the members that cause a timeout halt are the offline
 * ones, which would otherwise install the halted version when they come back; hiding a version
 * from a device that already runs it changes nothing there (fioup never downgrades). The set is read when
 * the rollout changes; a member settling meanwhile stays hidden, which only errs on the safe side
 * (the device keeps what it runs: fioup never downgrades). A cancelled rollout keeps gating as
 * it was when cancelled (halted devices stay withheld), so cancelling never releases a version to
 * the rest of the fleet; a completed rollout gates nobody. Per version only its newest rollout
 * counts: a new rollout of a cancelled version decides from then on.
 *
 * @module
 */
import type { RolloutRow, Store } from "../store/types.ts";
import { EMPTY_VIEW, type RolloutAnnotation, type View } from "./view.ts";

interface Cached {
  row: RolloutRow;
  members: Map<string, number>;
  /** Halted or cancelled rollouts: released members that have not succeeded (they no longer see the version). */
  withheld: Set<string> | undefined;
  annotation: RolloutAnnotation;
}

export interface ViewCacheOptions {
  /** How often to reload in the background (default 0: only on refresh()). */
  pollMs?: number;
  onError?: (err: unknown) => void;
}

export class RolloutViews {
  #rollouts: Cached[] = [];
  /** Views by signature (one character per active rollout): at most 2^k distinct ones. */
  #views = new Map<string, View>();
  #fingerprint = "";
  #running: Promise<void> | undefined;
  #next: Promise<void> | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly store: Pick<Store, "gatingRollouts" | "rolloutMembers" | "rolloutDeviceStates">,
    private readonly opts: ViewCacheOptions = {},
  ) {}

  /** Loads once, then polls in the background. */
  async start(): Promise<this> {
    await this.refresh();
    const every = this.opts.pollMs ?? 0;
    if (every > 0) {
      this.#timer = setInterval(() => void this.refresh().catch((e) => this.opts.onError?.(e)), every);
      this.#timer.unref?.();
    }
    return this;
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** The rollouts that gate devices, as last loaded. */
  get active(): readonly RolloutRow[] {
    return this.#rollouts.map((r) => r.row);
  }

  /**
   * Reloads from the store if any active rollout changed. Concurrent calls share one load; a call
   * made while a load runs gets the next one (which started after the call, so it sees every commit
   * made before the call).
   */
  refresh(): Promise<void> {
    if (this.#running) return (this.#next ??= this.#running.catch(() => {}).then(() => ((this.#next = undefined), this.refresh())));
    this.#running = this.#load().finally(() => (this.#running = undefined));
    return this.#running;
  }

  async #load(): Promise<void> {
    const rows = await this.store.gatingRollouts(); // by id
    const fingerprint = rows.map((r) => `${r.id}.${r.revision}`).join(",");
    if (fingerprint === this.#fingerprint) return;
    const known = new Map(this.#rollouts.map((r) => [r.row.id, r.members]));
    const next: Cached[] = [];
    for (const row of rows) {
      let members = known.get(row.id);
      if (!members) {
        members = new Map();
        for (const m of await this.store.rolloutMembers(row.id)) members.set(m.uuid, m.wave);
      }
      const annotation: RolloutAnnotation = { rollout: row.id };
      if (row.installWindow) annotation.window = row.installWindow;
      if (row.maxHoldS) annotation.maxHold = row.maxHoldS;
      const withholds = row.state === "halted" || row.state === "cancelled";
      next.push({ row, members, withheld: withholds ? await this.#unsucceededReleased(row) : undefined, annotation });
    }
    this.#rollouts = next;
    this.#views = new Map();
    this.#fingerprint = fingerprint;
  }

  /** A halted or cancelled rollout's members of its released waves that have not succeeded (pending or failed). */
  async #unsucceededReleased(row: RolloutRow): Promise<Set<string>> {
    const out = new Set<string>();
    for (let wave = 0; wave <= row.wave; wave++) {
      for (const status of ["pending", "failed"] as const) {
        let after: string | undefined;
        for (;;) {
          const page = await this.store.rolloutDeviceStates(row.id, { wave, status, limit: 10_000, ...(after ? { after } : {}) });
          for (const d of page) out.add(d.uuid);
          if (page.length < 10_000) break;
          after = page.at(-1)!.uuid;
        }
      }
    }
    return out;
  }

  /** The device's view now (synchronous, from memory). */
  rolloutView(uuid: string): View {
    const rollouts = this.#rollouts;
    if (rollouts.length === 0) return EMPTY_VIEW;
    let sig = "";
    for (const r of rollouts) {
      const wave = r.members.get(uuid);
      sig += wave !== undefined && wave <= r.row.wave && !r.withheld?.has(uuid) ? "a" : "h";
    }
    let view = this.#views.get(sig);
    if (!view) {
      const hideVersions: string[] = [];
      const annotate: Record<string, RolloutAnnotation> = {};
      const key: string[] = [];
      for (const [i, r] of rollouts.entries()) {
        if (sig[i] === "a") annotate[r.row.targetVersion] = r.annotation;
        else hideVersions.push(r.row.targetVersion);
        key.push(`${r.row.id}:${sig[i]}`);
      }
      view = Object.freeze({ key: key.join(","), hideVersions, annotate });
      this.#views.set(sig, view);
    }
    return view;
  }
}
