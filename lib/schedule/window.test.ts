import { describe, expect, test } from "bun:test";
import { isWindowOpen, nextWindowOpening, parseWindow, WindowSpecError } from "./window.ts";
import { systemTimeZone, wallClock } from "./wall-clock.ts";

const at = (iso: string) => Date.parse(iso);
const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString().replace(".000Z", "Z"));
const next = (spec: string, from: string, zone = "UTC") => iso(nextWindowOpening(parseWindow(spec), at(from), zone));
const open = (spec: string, when: string, zone = "UTC") => isWindowOpen(parseWindow(spec), at(when), zone);

describe("parseWindow", () => {
  test("days, ranges and a zone", () => {
    expect(parseWindow("Sat 02:00-04:00 Europe/Berlin")).toEqual({
      spec: "Sat 02:00-04:00 Europe/Berlin",
      zone: "Europe/Berlin",
      ranges: [{ days: [6], start: 7200, end: 14400 }],
    });
    expect(parseWindow("daily 01:00-05:00").ranges).toEqual([{ days: [0, 1, 2, 3, 4, 5, 6], start: 3600, end: 18000 }]);
    expect(parseWindow("01:00-05:00").ranges[0]!.days).toHaveLength(7);
    expect(parseWindow("Fri-Mon 22:00-06:00").ranges[0]!.days).toEqual([0, 1, 5, 6]);
    const w = parseWindow("Mon-Fri 22:00-06:00; Sat, Sun 00:00-24:00 America/New_York");
    expect(w.zone).toBe("America/New_York");
    expect(w.ranges).toEqual([
      { days: [1, 2, 3, 4, 5], start: 79200, end: 21600 },
      { days: [0, 6], start: 0, end: 86400 },
    ]);
    expect(parseWindow("monday,Wednesday 01:00-02:00, 13:00-14:00").ranges).toHaveLength(2);
    expect(parseWindow("daily 01:00-02:00 UTC").zone).toBe("UTC");
  });

  test("clear errors", () => {
    const err = (spec: string) => {
      try {
        parseWindow(spec);
      } catch (e) {
        expect(e).toBeInstanceOf(WindowSpecError);
        return (e as Error).message;
      }
      throw new Error(`${spec} parsed`);
    };
    expect(err("")).toBe('Invalid maintenance window "": it is empty');
    expect(err("Funday 01:00-02:00")).toContain('"Funday" is not a day');
    expect(err("Sat 25:00-04:00")).toContain("25:00 is not a time of day");
    expect(err("Sat 24:00-04:00")).toContain("24:00 is not a time of day");
    expect(err("Sat 01:60-04:00")).toContain("01:60 is not a time of day");
    expect(err("daily 01:00-01:00")).toContain("01:00-01:00 is empty");
    expect(err("daily 01:00-05:00 Mars/Olympus")).toContain('Unknown time zone "Mars/Olympus"');
    expect(err("Mon-Fri")).toContain("has no time range");
    expect(err("Sat 2am-4am")).toContain('"2am-4am" is not a time range');
    expect(err("Sat 01:00-02:00 UTC; Sun 01:00-02:00")).toContain('"UTC" is out of place');
    expect(err("Sat 01:00-02:00;")).toContain("is empty");
  });
});

describe("isWindowOpen", () => {
  // 2026-12-05 is a Saturday.
  test("a weekly window in its own zone, whatever the device's zone", () => {
    const w = "Sat 02:00-04:00 Europe/Berlin";
    expect(open(w, "2026-12-05T00:59:59Z", "Asia/Tokyo")).toBe(false); // 01:59:59 CET
    expect(open(w, "2026-12-05T01:00:00Z", "Asia/Tokyo")).toBe(true);
    expect(open(w, "2026-12-05T02:59:59Z")).toBe(true);
    expect(open(w, "2026-12-05T03:00:00Z")).toBe(false); // end is exclusive
    expect(open(w, "2026-12-12T01:30:00Z")).toBe(true); // a week later
    expect(open(w, "2026-12-06T01:30:00Z")).toBe(false); // Sunday
  });

  test("without a zone the device's zone applies", () => {
    expect(open("daily 01:00-05:00", "2026-12-05T00:30:00Z", "UTC")).toBe(false);
    expect(open("daily 01:00-05:00", "2026-12-05T00:30:00Z", "Europe/Berlin")).toBe(true);
  });

  test("ranges across midnight belong to the day they start on", () => {
    const w = "Mon-Fri 22:00-06:00";
    expect(open(w, "2026-12-04T23:00:00Z")).toBe(true); // Friday night
    expect(open(w, "2026-12-05T05:59:00Z")).toBe(true); // Saturday morning: Friday's range
    expect(open(w, "2026-12-05T06:00:00Z")).toBe(false);
    expect(open(w, "2026-12-05T23:00:00Z")).toBe(false); // Saturday night
    expect(open(w, "2026-12-07T05:00:00Z")).toBe(false); // Monday morning: Sunday had no range
    expect(open(w, "2026-12-07T22:00:00Z")).toBe(true);
  });

  test("several ranges, and a whole day", () => {
    const w = "Mon-Fri 22:00-06:00; Sat,Sun 00:00-24:00";
    expect(open(w, "2026-12-05T12:00:00Z")).toBe(true);
    expect(open(w, "2026-12-06T23:59:59Z")).toBe(true);
    expect(open(w, "2026-12-07T12:00:00Z")).toBe(false);
    expect(open("daily 00:00-24:00", "2026-12-07T12:00:00Z")).toBe(true);
  });
});

describe("nextWindowOpening", () => {
  test("now when open, else the next start", () => {
    expect(next("Sat 02:00-04:00 Europe/Berlin", "2026-12-05T01:30:00Z")).toBe("2026-12-05T01:30:00Z");
    expect(next("Sat 02:00-04:00 Europe/Berlin", "2026-12-05T03:00:00Z")).toBe("2026-12-12T01:00:00Z");
    expect(next("Sat 02:00-04:00 Europe/Berlin", "2026-12-01T10:00:00Z")).toBe("2026-12-05T01:00:00Z");
    expect(next("Mon-Fri 22:00-06:00", "2026-12-05T07:00:00Z")).toBe("2026-12-07T22:00:00Z");
    expect(next("daily 01:00-01:01", "2026-12-05T01:01:00Z")).toBe("2026-12-06T01:00:00Z");
    expect(next("daily 01:00-05:00", "2026-12-05T00:30:00Z", "America/New_York")).toBe("2026-12-05T06:00:00Z");
  });

  // Europe/Berlin springs forward on 2026-03-29 at 01:00Z (02:00 CET -> 03:00 CEST)
  // and falls back on 2026-10-25 at 01:00Z (03:00 CEST -> 02:00 CET).
  test("spring forward: a range in the skipped hour opens when the gap ends, or not that day", () => {
    expect(next("daily 02:00-04:00 Europe/Berlin", "2026-03-28T23:00:00Z")).toBe("2026-03-29T01:00:00Z");
    expect(open("daily 02:00-04:00 Europe/Berlin", "2026-03-29T00:59:59Z")).toBe(false);
    expect(open("daily 02:00-04:00 Europe/Berlin", "2026-03-29T01:59:59Z")).toBe(true); // 03:59:59 CEST
    expect(open("daily 02:00-04:00 Europe/Berlin", "2026-03-29T02:00:00Z")).toBe(false);
    expect(next("daily 02:30-03:30 Europe/Berlin", "2026-03-28T23:00:00Z")).toBe("2026-03-29T01:00:00Z");
    expect(next("Sun 02:15-02:45 Europe/Berlin", "2026-03-28T23:00:00Z")).toBe("2026-04-05T00:15:00Z"); // gone that Sunday
    expect(next("daily 03:00-04:00 Europe/Berlin", "2026-03-28T23:00:00Z")).toBe("2026-03-29T01:00:00Z");
  });

  test("fall back: a range in the repeated hour opens twice", () => {
    const w = "daily 02:00-02:10 Europe/Berlin";
    expect(next(w, "2026-10-24T23:00:00Z")).toBe("2026-10-25T00:00:00Z"); // 02:00 CEST
    expect(next(w, "2026-10-25T00:20:00Z")).toBe("2026-10-25T01:00:00Z"); // 02:00 CET, again
    expect(next(w, "2026-10-25T01:20:00Z")).toBe("2026-10-26T01:00:00Z");
    expect(next("daily 04:00-05:00 Europe/Berlin", "2026-10-24T23:00:00Z")).toBe("2026-10-25T03:00:00Z"); // after the change: +1
  });

  test("the wall clock reads Intl's zone data", () => {
    expect(wallClock(at("2026-03-29T01:30:00Z"), "Europe/Berlin")).toEqual({ weekday: 0, second: 3 * 3600 + 1800 });
    expect(typeof systemTimeZone()).toBe("string");
  });
});
