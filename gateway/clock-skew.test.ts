import { expect, test } from "bun:test";
import { ClockSkewWatch, measureClockSkew } from "./clock-skew.ts";

test("measureClockSkew: this clock minus the database's, read halfway through the round trip", async () => {
  // The database reads its clock halfway through the round trip (at least 40 ms, longer on a
  // loaded machine), 10 min behind: taken at either end instead of halfway, the skew is off by 20 ms or more.
  const m = await measureClockSkew(async () => {
    const asked = Date.now();
    await Bun.sleep(40);
    return new Date((asked + Date.now()) / 2 - 10 * 60_000);
  });
  expect(m.skewMs).toBeGreaterThan(600_000 - 10);
  expect(m.skewMs).toBeLessThan(600_000 + 10);
});

test("ClockSkewWatch: warns once per spell out of step, naming both clocks, says when they agree again, gives every measure", async () => {
  let offsetMs = 0; // the database's clock minus this one's
  let down = false;
  const logged: string[] = [];
  const measured: number[] = [];
  const watch = new ClockSkewWatch({
    databaseClock: async () => {
      if (down) throw new Error("database unreachable");
      return new Date(Date.now() + offsetMs);
    },
    log: (l) => logged.push(l),
    onMeasure: (s) => measured.push(s),
    intervalMs: 3_600_000,
  });
  await watch.start();
  expect(logged).toEqual([]);
  offsetMs = -3_600_000; // the database an hour behind: this replica is ahead
  await watch.check();
  await watch.check();
  expect(logged.length).toBe(1);
  expect(logged[0]).toMatch(/this replica's clock \(\S+\) is 3600\.\d s ahead of the database's \(\S+\): replicas need synchronised clocks \(NTP\)/);
  expect(logged[0]).toContain("registry tokens");
  down = true;
  expect(await watch.check()).toBeUndefined(); // no answer: no measure, no word
  down = false;
  offsetMs = 5000;
  await watch.check(); // still out of step (behind now): same spell
  expect(logged.length).toBe(1);
  offsetMs = 1000;
  await watch.check();
  expect(logged.length).toBe(2);
  expect(logged[1]).toContain("agrees with the database's again");
  watch.stop();
  expect(measured.length).toBe(5);
  expect(measured[1]).toBeGreaterThan(3599);
  expect(measured[3]).toBeLessThan(-4.9);
});
