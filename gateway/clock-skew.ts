/**
 * This replica's clock against the database's. Replicas on one PostgreSQL database each stamp
 * times with their own clock: registry tokens they issue (checked by the others, registry/token.ts,
 * with a leeway of TOKEN_CLOCK_LEEWAY_SECONDS), the device events and check-ins they receive (which
 * rollout health windows, the dashboard and the event retention compare with times stamped by the
 * other replicas). Leases are timed by the database itself (Store.tryLease) and need no agreement;
 * the TUF metadata's expiries are reckoned by the database's clock as last measured here (the
 * signer's TufRepo clock, gateway.ts), so a skewed signer signs the expiries the others would.
 * Clocks kept by NTP agree within milliseconds; one without it drifts, or starts an hour off, and
 * nothing else would say so. So at start, and every minute, a replica reads the database's clock,
 * corrected for half the round trip, logs once when the two differ by more than a few seconds
 * (naming both times and what it breaks) and once more when they agree again, and shows the
 * difference as `gateway_clock_skew_seconds` on /metrics. SQLite is one host: nothing to compare.
 *
 * @module
 */
import { TOKEN_CLOCK_LEEWAY_SECONDS } from "./registry/token.ts";

/** Beyond this difference a replica warns: NTP keeps clocks far closer, so more means it is not running. */
export const CLOCK_SKEW_WARN_MS = 3000;
/** How often a replica compares its clock again (one `SELECT clock_timestamp()`). */
export const CLOCK_SKEW_CHECK_MS = 60_000;

export interface ClockSkewOptions {
  /** The database's clock (PostgresStore.databaseClock). */
  databaseClock: () => Promise<Date>;
  log: (line: string) => void;
  /** Each measure, in seconds: this clock minus the database's (for /metrics). */
  onMeasure?: (seconds: number) => void;
  warnMs?: number;
  intervalMs?: number;
}

export interface ClockSkew {
  /** This clock minus the database's, in ms: positive when this replica is ahead. */
  skewMs: number;
  /** This clock when the database read its own (halfway through the round trip). */
  local: Date;
  database: Date;
}

/** Reads the database's clock and this one's at the same moment, as near as a round trip allows. */
export async function measureClockSkew(databaseClock: () => Promise<Date>): Promise<ClockSkew> {
  const sentAt = Date.now();
  const sent = performance.now();
  const database = await databaseClock();
  const local = sentAt + (performance.now() - sent) / 2;
  return { skewMs: local - database.getTime(), local: new Date(local), database };
}

/** The start's check and the periodic ones, warning once per spell out of step. */
export class ClockSkewWatch {
  #skewMs = 0;
  #warned = false;
  #running = false;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(private readonly opts: ClockSkewOptions) {}

  /** This clock minus the database's as last measured, in ms (0 before a measure succeeded). */
  get skewMs(): number {
    return this.#skewMs;
  }

  /** Measures once; `undefined` when the database did not answer (its outage is logged by the store). */
  async check(): Promise<ClockSkew | undefined> {
    if (this.#running) return undefined;
    this.#running = true;
    try {
      const m = await measureClockSkew(this.opts.databaseClock).catch(() => undefined);
      if (!m) return undefined;
      this.#skewMs = m.skewMs;
      this.opts.onMeasure?.(m.skewMs / 1000);
      const out = Math.abs(m.skewMs) > (this.opts.warnMs ?? CLOCK_SKEW_WARN_MS);
      if (out && !this.#warned) this.opts.log(skewWarning(m));
      else if (!out && this.#warned) this.opts.log(`gateway: this replica's clock agrees with the database's again (within ${Math.abs(m.skewMs / 1000).toFixed(1)} s)`);
      this.#warned = out;
      return m;
    } finally {
      this.#running = false;
    }
  }

  /** Checks now, then every CLOCK_SKEW_CHECK_MS until stop(). */
  async start(): Promise<this> {
    await this.check();
    this.#timer = setInterval(() => void this.check(), this.opts.intervalMs ?? CLOCK_SKEW_CHECK_MS);
    this.#timer.unref?.();
    return this;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

function skewWarning(m: ClockSkew): string {
  const s = Math.abs(m.skewMs / 1000).toFixed(1);
  return (
    `gateway: WARNING: this replica's clock (${m.local.toISOString()}) is ${s} s ${m.skewMs > 0 ? "ahead of" : "behind"} the database's (${m.database.toISOString()}): ` +
    `replicas need synchronised clocks (NTP). Leases (the TUF signer) are timed by the database and the TUF metadata's expiries reckoned by its clock, both unaffected, but registry tokens this replica issues ` +
    `are refused by the others beyond ${TOKEN_CLOCK_LEEWAY_SECONDS} s of skew, and the times it stamps on device events and check-ins ` +
    `(rollout health windows, last seen, event retention) are off by ${s} s against the other replicas'`
  );
}
