/**
 * Wall-clock time in an IANA time zone, through Intl (no tz database of our own):
 * the weekday and the second of the local day at an instant.
 *
 * @module
 */

/** A time zone name that Intl does not know. */
export class UnknownTimeZoneError extends Error {
  override name = "UnknownTimeZoneError";
  constructor(readonly zone: string) {
    super(`Unknown time zone "${zone}": expected an IANA name such as Europe/Berlin or UTC`);
  }
}

export interface WallClock {
  /** 0 = Sunday ... 6 = Saturday. */
  weekday: number;
  /** Seconds since local midnight, 0..86399. */
  second: number;
}

const formats = new Map<string, Intl.DateTimeFormat>();
const WEEKDAYS: Record<string, number> = { Sun: 0, Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6 };

function formatFor(zone: string): Intl.DateTimeFormat {
  let f = formats.get(zone);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat("en-US", { timeZone: zone, hourCycle: "h23", weekday: "short", hour: "2-digit", minute: "2-digit", second: "2-digit" });
    } catch {
      throw new UnknownTimeZoneError(zone);
    }
    formats.set(zone, f);
  }
  return f;
}

/**
 * The canonical spelling of a time zone name, or throws.
 *
 * @throws {UnknownTimeZoneError} If Intl does not know it.
 */
export function checkTimeZone(zone: string): string {
  return formatFor(zone).resolvedOptions().timeZone;
}

/** The zone this system runs in ($TZ, /etc/localtime), as Intl sees it. */
export function systemTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

/**
 * Weekday and second of the day at `at` in `zone`.
 *
 * @example
 * ```ts
 * wallClock(Date.parse("2026-03-29T01:30:00Z"), "Europe/Berlin"); // { weekday: 0, second: 12600 } (03:30 CEST)
 * ```
 * @throws {UnknownTimeZoneError} If Intl does not know `zone`.
 */
export function wallClock(at: number, zone: string): WallClock {
  let weekday = 0;
  let h = 0;
  let m = 0;
  let s = 0;
  for (const p of formatFor(zone).formatToParts(at)) {
    if (p.type === "weekday") weekday = WEEKDAYS[p.value] ?? 0;
    else if (p.type === "hour") h = Number(p.value) % 24;
    else if (p.type === "minute") m = Number(p.value);
    else if (p.type === "second") s = Number(p.value);
  }
  return { weekday, second: h * 3600 + m * 60 + s };
}
