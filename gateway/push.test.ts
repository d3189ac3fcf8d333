/**
 * TimestampWatch: waiters end on news, on their timeout (from the shared tick, no timer each)
 * or when cancelled (the client left), and leave nothing behind.
 */
import { expect, test } from "bun:test";
import { type Leaving, TimestampWatch } from "./push.ts";

function storage(start = 1) {
  const s = {
    version: start,
    reads: 0,
    getLatest: async () => {
      s.reads++;
      return { version: s.version } as never;
    },
  };
  return s;
}

test("news wakes every waiter whose version is older, and only those", async () => {
  const db = storage(3);
  const watch = new TimestampWatch(db, 20);
  const old = watch.waitAfter(3, 5_000);
  const newer = watch.waitAfter(4, 5_000);
  await Bun.sleep(30);
  expect(watch.waiting).toBe(2);
  db.version = 4;
  expect(await old).toBe(4);
  expect(watch.waiting).toBe(1);
  db.version = 5;
  expect(await newer).toBe(5);
  expect(watch.waiting).toBe(0);
  // Already behind: answered at once.
  expect(await watch.waitAfter(2, 5_000)).toBe(5);
});

test("a wait without news ends after its timeout, within one tick", async () => {
  const watch = new TimestampWatch(storage(1), 20);
  const t0 = Date.now();
  const waits = [watch.waitAfter(1, 100), watch.waitAfter(1, 200), watch.waitAfter(1, 200)];
  expect(await waits[0]).toBeUndefined();
  const first = Date.now() - t0;
  expect(first).toBeGreaterThanOrEqual(95);
  expect(first).toBeLessThan(180);
  expect(watch.waiting).toBe(2);
  expect(await Promise.all(waits.slice(1))).toEqual([undefined, undefined]);
  expect(Date.now() - t0).toBeGreaterThanOrEqual(195);
  expect(watch.waiting).toBe(0);
  expect(await watch.waitAfter(1, 0)).toBeUndefined();
});

test("a wait whose client leaves ends at once and is no longer counted", async () => {
  const watch = new TimestampWatch(storage(1), 20);
  const client: Leaving = { closed: false, onClose: undefined };
  const wait = watch.waitAfter(1, 60_000, client);
  await Bun.sleep(30);
  expect(watch.waiting).toBe(1);
  client.onClose!();
  expect(await wait).toBeUndefined();
  expect(watch.waiting).toBe(0);
  client.onClose!(); // twice: nothing
  expect(watch.waiting).toBe(0);
  // A client gone before its wait is queued is not held at all.
  const gone: Leaving = { closed: true, onClose: undefined };
  expect(await watch.waitAfter(1, 60_000, gone)).toBeUndefined();
  expect(watch.waiting).toBe(0);
});

test("the database is read once per tick whatever the number of waiters, and not at all without them", async () => {
  const db = storage(1);
  const watch = new TimestampWatch(db, 50);
  const waits = Array.from({ length: 1000 }, () => watch.waitAfter(1, 300));
  await Bun.sleep(10);
  const before = db.reads;
  await Promise.all(waits);
  expect(db.reads - before).toBeLessThanOrEqual(8); // about 300 / 50 ticks
  const after = db.reads;
  await Bun.sleep(200);
  expect(db.reads).toBe(after);
});

test("endWaitsOf ends every wait of that device with null at once, and no other device's", async () => {
  const db = storage(1);
  const watch = new TimestampWatch(db, 20);
  const a1 = watch.waitAfter(1, 60_000, undefined, "a");
  const a2 = watch.waitAfter(1, 60_000, undefined, "a");
  const b = watch.waitAfter(1, 60_000, undefined, "b");
  await Bun.sleep(30);
  expect(watch.waiting).toBe(3);
  expect(watch.endWaitsOf("a")).toBe(2);
  expect(await Promise.all([a1, a2])).toEqual([null, null]);
  expect(watch.waiting).toBe(1);
  expect(watch.endWaitsOf("a")).toBe(0);
  // A later news reaches the other device only.
  db.version = 2;
  expect(await b).toBe(2);
  expect(watch.waiting).toBe(0);
  // A device's wait that ended otherwise (its client left) is out of its chain too.
  const client: Leaving = { closed: false, onClose: undefined };
  const c1 = watch.waitAfter(2, 60_000, client, "c");
  const c2 = watch.waitAfter(2, 60_000, undefined, "c");
  await Bun.sleep(30);
  client.onClose!();
  expect(await c1).toBeUndefined();
  expect(watch.endWaitsOf("c")).toBe(1);
  expect(await c2).toBeNull();
  expect(watch.waiting).toBe(0);
});

test("a device past its perDevice waits has its oldest ended as timed out, and no other device's", async () => {
  const db = storage(1);
  const watch = new TimestampWatch(db, 20, 2);
  const other = watch.waitAfter(1, 60_000, undefined, "b");
  const a1 = watch.waitAfter(1, 60_000, undefined, "a");
  const a2 = watch.waitAfter(1, 60_000, undefined, "a");
  await Bun.sleep(30); // all queued (the first read is done)
  const a3 = watch.waitAfter(1, 60_000, undefined, "a");
  expect(await a1).toBeUndefined();
  expect(watch.waiting).toBe(3);
  const a4 = watch.waitAfter(1, 60_000, undefined, "a");
  expect(await a2).toBeUndefined();
  expect(watch.waiting).toBe(3);
  // The two newest of "a" and the other device's wait are still held: news reaches all three.
  db.version = 2;
  expect(await Promise.all([a3, a4, other])).toEqual([2, 2, 2]);
  expect(watch.waiting).toBe(0);
});
