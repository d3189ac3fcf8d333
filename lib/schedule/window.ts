/**
 * Maintenance windows: when a device may install an update. A window is one or
 * more clauses separated by `;`, each an optional day list and one or more
 * local time ranges, with an optional IANA time zone at the very end:
 *
 *     Sat 02:00-04:00 Europe/Berlin
 *     daily 01:00-05:00
 *     Mon-Fri 22:00-06:00; Sat,Sun 00:00-24:00 America/New_York
 *     Mon,Wed 01:00-02:00,13:00-14:00
 *
 * Days: `daily` (the default), `Mon`..`Sun` (or full names), ranges `Mon-Fri`
 * (`Fri-Mon` wraps) and lists `Sat,Sun`. A range whose end is not after its start
 * crosses midnight: it opens on the listed day and closes the next morning.
 * `24:00` ends a range at midnight. Times are wall-clock times in the zone, so
 * on the day clocks spring forward a range in the skipped hour opens at the
 * first instant after the gap (or not at all when it lies wholly inside the gap),
 * and on the day they fall back a range in the repeated hour opens twice.
 *
 * @module
 */
import { checkTimeZone, UnknownTimeZoneError, wallClock, type WallClock } from "./wall-clock.ts";

/** A window spec that does not parse. */
export class WindowSpecError extends Error {
  override name = "WindowSpecError";
  constructor(
    readonly spec: string,
    why: string,
  ) {
    super(`Invalid maintenance window "${spec}": ${why}`);
  }
}

/** One local time range on some weekdays. */
export interface WindowRange {
  /** Weekdays the range opens on, 0 = Sunday. */
  days: number[];
  /** Seconds after local midnight. */
  start: number;
  /** Seconds after local midnight, 1..86400; not after `start` = the next day. */
  end: number;
}

export interface Window {
  /** The spec as given (trimmed). */
  spec: string;
  /** Its time zone, when the spec names one. */
  zone?: string;
  ranges: WindowRange[];
}

const DAY_NAMES = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"];
const TIME_RANGE = /^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$/;

function dayIndex(word: string, spec: string): number {
  const w = word.toLowerCase();
  const i = DAY_NAMES.findIndex((d) => d === w || d.slice(0, 3) === w);
  if (i < 0) throw new WindowSpecError(spec, `"${word}" is not a day (Mon, Tue, ... Sun, or daily)`);
  return i;
}

function parseDays(token: string, spec: string): number[] {
  if (/^(daily|everyday)$/i.test(token)) return [0, 1, 2, 3, 4, 5, 6];
  const days = new Set<number>();
  for (const part of token.split(",")) {
    const [a, b, extra] = part.split("-");
    if (extra !== undefined || !a) throw new WindowSpecError(spec, `"${part}" is not a day or a day range`);
    const from = dayIndex(a, spec);
    const to = b === undefined ? from : dayIndex(b, spec);
    for (let d = from; ; d = (d + 1) % 7) {
      days.add(d);
      if (d === to) break;
    }
  }
  return [...days].sort();
}

function clockSeconds(h: string, m: string, spec: string, allow24: boolean): number {
  const hh = Number(h);
  const mm = Number(m);
  if (mm > 59 || hh > 24 || (hh === 24 && (mm !== 0 || !allow24))) throw new WindowSpecError(spec, `${h}:${m} is not a time of day (00:00-23:59${allow24 ? ", or 24:00 as an end" : ""})`);
  return hh * 3600 + mm * 60;
}

function parseRanges(token: string, days: number[], spec: string): WindowRange[] {
  return token.split(",").map((part) => {
    const m = TIME_RANGE.exec(part);
    if (!m) throw new WindowSpecError(spec, `"${part}" is not a time range like 02:00-04:00`);
    const start = clockSeconds(m[1]!, m[2]!, spec, false);
    const end = clockSeconds(m[3]!, m[4]!, spec, true);
    if (start === end) throw new WindowSpecError(spec, `${part} is empty (use 00:00-24:00 for a whole day)`);
    return { days, start, end };
  });
}

const looksLikeTimes = (t: string) => /^\d/.test(t);

/**
 * Parses a window spec.
 *
 * @example
 * ```ts
 * parseWindow("Sat 02:00-04:00 Europe/Berlin"); // { spec, zone: "Europe/Berlin", ranges: [{ days: [6], start: 7200, end: 14400 }] }
 * ```
 * @throws {WindowSpecError} With the part that is wrong: an unknown day or time zone, a bad or empty time range.
 */
export function parseWindow(text: string): Window {
  const spec = text.trim();
  if (!spec) throw new WindowSpecError(spec, "it is empty");
  const clauses = spec.split(";").map((c) => c.trim().replace(/\s*,\s*/g, ",").split(/\s+/).filter(Boolean));
  let zone: string | undefined;
  const last = clauses.at(-1)!;
  if (last.length > 1 && !looksLikeTimes(last.at(-1)!)) {
    const name = last.pop()!;
    try {
      zone = checkTimeZone(name);
    } catch (e) {
      throw new WindowSpecError(spec, e instanceof UnknownTimeZoneError ? e.message : `"${name}" is not a time zone`);
    }
  }
  const ranges: WindowRange[] = [];
  for (const tokens of clauses) {
    if (!tokens.length) throw new WindowSpecError(spec, "a clause between ';' is empty");
    let days = [0, 1, 2, 3, 4, 5, 6];
    let i = 0;
    if (!looksLikeTimes(tokens[0]!)) days = parseDays(tokens[i++]!, spec);
    if (i >= tokens.length) throw new WindowSpecError(spec, `"${tokens.join(" ")}" has no time range (like 02:00-04:00)`);
    for (; i < tokens.length; i++) {
      if (!looksLikeTimes(tokens[i]!)) throw new WindowSpecError(spec, `"${tokens[i]}" is out of place: a time zone may only come last, days only first in a clause`);
      ranges.push(...parseRanges(tokens[i]!, days, spec));
    }
  }
  return { spec, ...(zone ? { zone } : {}), ranges };
}

function openAt(w: Window, c: WallClock): boolean {
  return w.ranges.some((r) =>
    r.end > r.start
      ? r.days.includes(c.weekday) && c.second >= r.start && c.second < r.end
      : (r.days.includes(c.weekday) && c.second >= r.start) || (r.days.includes((c.weekday + 6) % 7) && c.second < r.end),
  );
}

/** The zone a window is evaluated in: its own, else `fallback`. */
export const windowZone = (w: Window, fallback: string): string => w.zone ?? fallback;

/**
 * Whether the window is open at `at` (ms since the epoch), reading wall-clock time in the
 * window's zone, or `zone` when the spec names none.
 */
export function isWindowOpen(w: Window, at: number, zone: string): boolean {
  return openAt(w, wallClock(at, windowZone(w, zone)));
}

/** Seconds from wall-clock `c` to the next range start (wall-clock arithmetic, ignoring DST). */
function secondsToNextStart(w: Window, c: WallClock): number {
  let best = Infinity;
  for (const r of w.ranges)
    for (let k = 0; k <= 7; k++) {
      if (!r.days.includes((c.weekday + k) % 7)) continue;
      const d = k * 86400 + r.start - c.second;
      if (d > 0 && d < best) best = d;
    }
  return best;
}

/**
 * The first instant at or after `from` when the window is open, to the second (undefined if it
 * never opens in the next 8 days, which only a range lying wholly inside a DST gap can cause).
 * Steps by wall-clock distance to the next start, at most 15 minutes (and half the shortest range)
 * at a time so a DST change cannot jump over an opening, then narrows down to the second.
 */
export function nextWindowOpening(w: Window, from: number, zone: string): number | undefined {
  const z = windowZone(w, zone);
  if (openAt(w, wallClock(from, z))) return from;
  const shortest = Math.min(...w.ranges.map((r) => (r.end > r.start ? r.end - r.start : r.end + 86400 - r.start)));
  const cap = Math.max(60, Math.min(900, Math.floor(shortest / 2)));
  let prev = from;
  while (prev - from < 8 * 86400_000 + 3600_000) {
    const step = Math.max(1, Math.min(cap, secondsToNextStart(w, wallClock(prev, z))));
    const cand = prev + step * 1000;
    if (openAt(w, wallClock(cand, z))) {
      let lo = prev;
      let hi = cand;
      while (hi - lo > 1000) {
        const mid = lo + Math.floor((hi - lo) / 2000) * 1000;
        if (openAt(w, wallClock(mid, z))) hi = mid;
        else lo = mid;
      }
      return hi;
    }
    prev = cand;
  }
  return undefined;
}
