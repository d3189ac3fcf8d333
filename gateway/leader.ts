/**
 * Singleton jobs across replicas. Several `gateway serve` replicas share one database, but some
 * work must run on exactly one of them at a time: re-signing the TUF timestamp and snapshot (two
 * signers would race to publish the same version). Each replica tries to hold a lease in the
 * database (Store.tryLease) and renews it well before it runs out; the holder runs the job. When
 * the holder dies, its lease expires and another replica takes it within `ttlMs` plus one renewal
 * interval. The database's clock times the lease, not the replicas' own: one whose clock runs
 * ahead would otherwise take a live lease, and the others would wait out its skew before taking
 * it back. A lease, not a PostgreSQL advisory lock: it works the same on SQLite, needs no
 * connection held for life, and the contract suite tests it on both backends.
 *
 * @module
 */
import { hostname } from "node:os";
import type { Store } from "./store/types.ts";

export interface LeaderOptions {
  /** How long a lease lasts without renewal (default 6 s: a dead holder is replaced within ~8 s). */
  ttlMs?: number;
  /** How often to renew or try (default ttl / 3). */
  renewMs?: number;
  /** Called when this replica becomes the holder. */
  onAcquire?: () => void;
  /** Called when this replica stops being the holder: with the error when the renewal failed, without when another replica holds it. */
  onLose?: (err?: unknown) => void;
  onError?: (err: unknown) => void;
}

export class LeaderLease {
  /** Who this replica is in the leases table: host, pid and a random part (PIDs repeat across containers). */
  readonly holder = `${hostname()}:${process.pid}:${crypto.randomUUID().slice(0, 8)}`;
  #leader = false;
  /** Until when (monotonic ms) the last renewal that succeeded holds the lease for certain. */
  #validUntil = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #tick: Promise<void> = Promise.resolve();
  /** Until when (monotonic ms) this replica does not seek the lease: it stepped down (stepDown). */
  #pausedUntil = 0;
  readonly #ttl: number;

  constructor(
    private readonly store: Pick<Store, "tryLease" | "releaseLease">,
    readonly name: string,
    private readonly opts: LeaderOptions = {},
  ) {
    this.#ttl = opts.ttlMs ?? DEFAULT_LEASE_TTL_MS;
  }

  /**
   * True while this replica holds the lease for certain: a renewal that has not answered within
   * the lease's life (a database that hangs, a write queued behind others) may have let it expire
   * and another replica take it, so the holder stops acting before that can happen.
   */
  get isLeader(): boolean {
    return this.#leader && performance.now() < this.#validUntil;
  }

  /** Tries once now, then keeps renewing or trying in the background. */
  async start(): Promise<this> {
    await this.#try();
    this.#timer = setInterval(() => (this.#tick = this.#try()), this.opts.renewMs ?? Math.floor(this.#ttl / 3));
    this.#timer.unref?.();
    return this;
  }

  /** True while this replica stays out of the lease after stepDown(). */
  get steppedDown(): boolean {
    return performance.now() < this.#pausedUntil;
  }

  /**
   * Gives the lease up now, if held, and does not seek it for `pauseMs`: a holder that cannot do
   * the job (the signer whose key cannot be read) lets a replica that can take it. Alone, it takes
   * the lease again once the pause is over. onLose is not called: the caller said why.
   */
  async stepDown(pauseMs: number): Promise<void> {
    this.#pausedUntil = performance.now() + pauseMs;
    await this.#tick; // a try in flight settles first, so it cannot take the lease back after the release
    if (!this.#leader) return;
    this.#leader = false;
    await this.store.releaseLease(this.name, this.holder).catch((e) => this.opts.onError?.(e));
  }

  async #try(): Promise<void> {
    if (this.steppedDown) return;
    let held = false;
    let failed: unknown;
    const sent = performance.now();
    try {
      held = await this.store.tryLease(this.name, this.holder, this.#ttl);
      // The database counts the lease from when the statement ran, never before it was sent.
      if (held) this.#validUntil = sent + this.#ttl;
    } catch (err) {
      failed = err;
      this.opts.onError?.(err); // cannot tell: step down, so two replicas never both act
    }
    if (held && !this.#leader) {
      this.#leader = true;
      this.opts.onAcquire?.();
    } else if (!held && this.#leader) {
      this.#leader = false;
      this.opts.onLose?.(failed);
    }
  }

  /** Stops trying and hands the lease over at once (on a clean shutdown). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#tick;
    if (this.#leader) {
      this.#leader = false;
      await this.store.releaseLease(this.name, this.holder).catch((e) => this.opts.onError?.(e));
    }
  }
}

/** How long a lease lasts without renewal when the replica sets no other (`serve --signer-lease`). */
export const DEFAULT_LEASE_TTL_MS = 6000;

/**
 * Whether another replica serves, told by lease `name` (each live replica keeps trying for the
 * signer's, so one of them holds it while any serves): asked by taking it under a throwaway holder
 * and giving it back at once. A held lease is asked again for `patienceMs` (default two lifetimes
 * of a lease): a replica killed moments ago, or one whose database was dumped moments ago and
 * restored (its row comes back with it), leaves a lease nobody renews, which runs out; a live one
 * is renewed. A free lease is not proof enough: the signer that stopped gracefully gave it back, or
 * the dead one's ran out, and the live replicas left ask for it only every third of a lifetime, so
 * this probe can be first. So once it got the lease, it watches `watchMs` (default a lifetime)
 * with the lease free, and asks again: a live replica has taken it by then. For a start that must
 * find every other replica stopped (`serve --registry-change`).
 */
export async function leaseHeldElsewhere(
  store: Pick<Store, "tryLease" | "releaseLease">,
  name: string,
  opts: { patienceMs?: number; watchMs?: number; onWait?: () => void } = {},
): Promise<boolean> {
  const probe = `${hostname()}:${process.pid}:probe-${crypto.randomUUID().slice(0, 8)}`;
  const until = performance.now() + (opts.patienceMs ?? 2 * DEFAULT_LEASE_TTL_MS);
  for (let asked = 0; !(await store.tryLease(name, probe, 1000)); asked++) {
    if (performance.now() >= until) return true;
    if (asked === 0) opts.onWait?.();
    await Bun.sleep(500);
  }
  await store.releaseLease(name, probe);
  await Bun.sleep(opts.watchMs ?? DEFAULT_LEASE_TTL_MS);
  if (!(await store.tryLease(name, probe, 1000))) return true;
  await store.releaseLease(name, probe);
  return false;
}
