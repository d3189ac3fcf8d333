/**
 * Durations a person writes, in admin API bodies and in flags (a token's lifetime, a rollout's
 * soak, registry gc's grace, TUF expiries): "30d", "12h", "90m", "3600s", "2w", at most 50 years.
 * A number alone is seconds in an API body (what a program sends), but a flag a person types
 * needs its unit (`unitRequired`): `--expires 30` meant as days made a token that died in 30 s. One syntax, read here, so the API schema (admin.ts, with
 * {@link DURATION_PATTERN}), the gateway reading a body and the CLI reading a flag never disagree
 * on what a duration is. It sits with the API's schemas, as a tag's rule does (target.ts), so
 * that lib/api needs nothing of lib/cli, and flags are read against the API, not the other way.
 *
 * @module
 */
export class InvalidDurationError extends Error {
  override name = "InvalidDurationError";
  constructor(value: string, why = "expected a number with an optional unit s, m, h, d or w (e.g. 30d)") {
    super(`Invalid duration "${value}": ${why}`);
  }
}

const UNIT: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** What a duration looks like as text (the admin API's schema checks bodies with it). */
export const DURATION_PATTERN = "^[0-9]{1,9}[smhdw]?$";

/**
 * Longer than any token should live, short enough that now + it is a valid date and that it fits
 * the 32-bit integer columns PostgreSQL keeps a rollout's durations in (up to 68 years): 100 years
 * passed validation and then failed the insert there with a 500, while SQLite took it.
 */
export const MAX_DURATION_SECONDS = 50 * 365 * 86400;

/**
 * Seconds as a duration in the shortest exact unit, the form {@link parseDuration} reads back:
 * 1800 -> "30m" (how `rollouts show` prints its settings).
 */
export function formatSeconds(s: number): string {
  for (const unit of ["d", "h", "m"] as const) {
    const n = UNIT[unit]!;
    if (s >= n && s % n === 0) return `${s / n}${unit}`;
  }
  return `${s}s`;
}

/**
 * Seconds in a duration.
 *
 * @example
 * ```ts
 * parseDuration("30d"); // 2592000
 * ```
 * @throws {InvalidDurationError} If it is malformed, not positive (zero passes with `allowZero`:
 *   registry gc's "no grace"), longer than 50 years, or (`unitRequired`) a number other than 0 without its unit.
 */
export function parseDuration(value: string | number, opts: { allowZero?: boolean; unitRequired?: boolean } = {}): number {
  let seconds: number;
  let signed = false;
  if (typeof value === "number") {
    if (!Number.isInteger(value)) throw new InvalidDurationError(String(value));
    seconds = value;
  } else {
    const m = /^(-?[0-9]{1,9})([smhdw]?)$/.exec(value.trim());
    if (!m) throw new InvalidDurationError(value);
    const n = m[1]!.replace(/^-/, "");
    if (opts.unitRequired && m[2] === "" && Number(n) !== 0) throw new InvalidDurationError(value, `give its unit: ${n}s, ${n}m, ${n}h, ${n}d or ${n}w`);
    seconds = Number(m[1]) * UNIT[m[2] || "s"]!;
    signed = m[1]!.startsWith("-");
  }
  // Well formed but zero or less ("0", "-5m"): the number is the problem, not the form. A minus
  // sign is refused even before a zero ("-0s"): no duration is written that way.
  if (seconds === 0 && opts.allowZero && !signed) return 0;
  if (seconds < 1 || signed) throw new InvalidDurationError(String(value), opts.allowZero ? "must be 0 or more" : "must be more than 0");
  if (seconds > MAX_DURATION_SECONDS) throw new InvalidDurationError(String(value), "longer than 50 years");
  return seconds;
}
