/** Durations for token lifetimes: "30d", "12h", "90m", "3600s", "2w" or a number of seconds. */
export class InvalidDurationError extends Error {
  override name = "InvalidDurationError";
  constructor(value: string) {
    super(`Invalid duration "${value}": expected a number with an optional unit s, m, h, d or w (e.g. 30d)`);
  }
}

const UNIT: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

export function parseDuration(value: string | number): number {
  if (typeof value === "number") {
    if (!Number.isInteger(value) || value < 1) throw new InvalidDurationError(String(value));
    return value;
  }
  const m = /^([0-9]{1,9})([smhdw]?)$/.exec(value.trim());
  if (!m || Number(m[1]) < 1) throw new InvalidDurationError(value);
  return Number(m[1]) * UNIT[m[2] || "s"]!;
}
