import { describe, expect, test } from "bun:test";
import type { Target } from "../../lib/api/index.ts";
import { MAX_HOLD_SECONDS, resolveConfig } from "../config.ts";
import { decideHold, EARLIEST_PLAUSIBLE_CLOCK, holdPolicy } from "./hold-policy.ts";

const cfg = (fioup: Record<string, string | number> = {}) => resolveConfig({ fioup }, { root: "", sotaDir: "/tmp/none" });
const target = (rollout?: unknown): Target => ({
  name: "hw-2",
  entry: { length: 0, hashes: {}, custom: { version: "2", hardwareIds: ["hw"], tags: [], docker_compose_apps: {}, ...(rollout ? { rollout } : {}) } },
});
const t = (iso: string) => Date.parse(iso);

describe("holdPolicy", () => {
  test("the rollout's window and max hold win over the config's", () => {
    const p = holdPolicy(cfg({ install_window: "daily 01:00-02:00", time_zone: "Asia/Tokyo", max_hold_seconds: 60 }), target({ rollout: "r1", window: "Sat 02:00-04:00 Europe/Berlin", maxHold: 7200 }));
    expect(p.window?.spec).toBe("Sat 02:00-04:00 Europe/Berlin");
    expect(p.zone).toBe("Europe/Berlin");
    expect(p.maxHoldSeconds).toBe(7200);
  });

  test("a signed max hold longer than a year holds for a year, so the hold's deadline is a date", () => {
    for (const maxHold of [1e300, Number.MAX_SAFE_INTEGER, MAX_HOLD_SECONDS + 1]) {
      const p = holdPolicy(cfg({ max_hold_seconds: 60 }), target({ rollout: "r1", maxHold }));
      expect(p.maxHoldSeconds).toBe(MAX_HOLD_SECONDS);
      const now = t("2026-12-05T02:30:00Z");
      const d = decideHold(p, [{ name: "app", since: "2026-12-05T00:00:00Z" }], now);
      expect(d).toMatchObject({ hold: true, reason: "lock", until: now + MAX_HOLD_SECONDS * 1000 });
      expect(new Date((d as { until: number }).until).toISOString()).toBe("2027-12-05T02:30:00.000Z");
    }
    expect(holdPolicy(cfg(), target({ maxHold: MAX_HOLD_SECONDS })).maxHoldSeconds).toBe(MAX_HOLD_SECONDS);
  });

  test("else the config's, in the config's zone; default max hold 24 h", () => {
    const p = holdPolicy(cfg({ install_window: "daily 01:00-02:00", time_zone: "Asia/Tokyo" }), target());
    expect(p.window?.spec).toBe("daily 01:00-02:00");
    expect(p.zone).toBe("Asia/Tokyo");
    expect(p.maxHoldSeconds).toBe(86400);
    expect(holdPolicy(cfg(), target()).window).toBeUndefined();
  });

  test("a target's window that does not parse is reported and the config's applies", () => {
    const p = holdPolicy(cfg({ install_window: "daily 01:00-02:00" }), target({ window: "Funday 01:00-02:00" }));
    expect(p.window?.spec).toBe("daily 01:00-02:00");
    expect(p.badWindow).toContain('"Funday" is not a day');
  });

  test("bad config values are config errors naming the key", () => {
    expect(() => cfg({ install_window: "daily 25:00-26:00" })).toThrow("fioup.install_window: Invalid maintenance window");
    expect(() => cfg({ time_zone: "Nowhere/Land" })).toThrow('fioup.time_zone: Unknown time zone "Nowhere/Land"');
  });
});

describe("decideHold", () => {
  const p = holdPolicy(cfg({ install_window: "daily 02:00-04:00", time_zone: "UTC", max_hold_seconds: 600 }), target());
  const lock = [{ name: "app", since: "2026-12-05T00:00:00Z" }];

  test("a closed window holds until it opens, whatever the locks", () => {
    expect(decideHold(p, [], t("2026-12-05T10:00:00Z"))).toEqual({ hold: true, reason: "window", until: t("2026-12-06T02:00:00Z") });
    expect(decideHold(p, lock, t("2026-12-05T10:00:00Z"), t("2026-12-01T00:00:00Z")).hold).toBe(true);
  });

  test("inside the window, locks hold for max hold from the first lock deferral, then are overridden", () => {
    const now = t("2026-12-05T02:30:00Z");
    expect(decideHold(p, [], now)).toEqual({ hold: false });
    expect(decideHold(p, lock, now)).toEqual({ hold: true, reason: "lock", until: now + 600_000, locks: lock });
    expect(decideHold(p, lock, now, now - 599_000)).toMatchObject({ hold: true, reason: "lock" });
    expect(decideHold(p, lock, now, now - 600_000)).toEqual({ hold: false, overriddenLocks: lock });
  });

  test("a clock that is not set yet (1970, an image's build date) judges no window: a windowed target waits for the clock", () => {
    const open = p; // daily 02:00-04:00 UTC: open at 03:00 on any day, 1970 too
    for (const now of [t("1970-01-01T03:00:00Z"), t("2026-06-01T03:00:00Z"), EARLIEST_PLAUSIBLE_CLOCK - 1])
      expect(decideHold(open, [], now)).toEqual({ hold: true, reason: "clock" });
    expect(decideHold(open, [], t("2026-12-05T03:00:00Z"))).toEqual({ hold: false });
    // Without a window the clock decides nothing: locks hold as ever, and nothing else does.
    const noWindow = holdPolicy(cfg({ max_hold_seconds: 600 }), target());
    expect(decideHold(noWindow, [], t("1970-01-01T03:00:00Z"))).toEqual({ hold: false });
    expect(decideHold(noWindow, lock, t("1970-01-01T03:00:00Z"))).toMatchObject({ hold: true, reason: "lock" });
  });
});
