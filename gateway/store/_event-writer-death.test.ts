import { afterEach, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PeerIdentity } from "../env.ts";
import { anEvent, json, testGateway } from "../../test/gateway/_fixture.ts";
import { until } from "../../test/harness/tmp.ts";
import { EventWriter } from "./_event-writer.ts";
import { WriterUnavailableError } from "./_writer-thread.ts";

// The SQLite writer thread dies (the GATEWAY_FAULT fault point throws an uncaught error in it, as
// a bug would) or hangs (never answers, never dies): devices posting events through the gateway's
// app get a prompt 503 for the calls it had not answered (after a hang, once the watchdog's bound
// has passed), retry as fioup does, and the gateway goes on storing; every acknowledged event is
// in the database exactly once.

const logged: string[] = [];
const consoleError = console.error;
afterEach(() => {
  console.error = consoleError;
  logged.length = 0;
});
/** Collects stderr lines of the gateway (the restart line goes there). */
function captureLog() {
  console.error = (...args: unknown[]) => void logged.push(args.map(String).join(" "));
}

/** The writer watchdog's bound in these tests (the default, 30 s, would outlast a device's patience here). */
const WATCHDOG_MS = 3000;

/** A gateway on a SQLite file whose writer thread crashes (or hangs) at `fault` on the n-th event batch. */
async function gatewayWithFault(fault: string, nth: number) {
  process.env.GATEWAY_FAULT = fault;
  process.env.GATEWAY_FAULT_NTH = String(nth);
  // Only the hang scenarios get the short bound: elsewhere a slow start or fsync on a loaded machine must not count as a hang.
  if (fault.startsWith("writer-hang")) process.env.GATEWAY_WRITER_WATCHDOG_MS = String(WATCHDOG_MS);
  try {
    return await testGateway({ dbFile: true });
  } finally {
    delete process.env.GATEWAY_FAULT;
    delete process.env.GATEWAY_FAULT_NTH;
    delete process.env.GATEWAY_WRITER_WATCHDOG_MS;
  }
}

type Gw = Awaited<ReturnType<typeof testGateway>>;
interface Tally {
  acked: Set<string>;
  /** Each refused attempt: its status and how long the device waited for the answer. */
  refused: { status: number; ms: number }[];
  /** Sum of `stored` over the acknowledged answers. */
  stored: number;
  hung: number;
}

/** One device posting `batches` batches of 5 events, retrying a refused batch as fioup does. */
async function device(t: Gw, peer: PeerIdentity, uuid: string, batches: number, tally: Tally) {
  for (let b = 0; b < batches; b++) {
    const events = Array.from({ length: 5 }, (_, i) => anEvent(`${uuid}-${b}-${i}`));
    for (let attempt = 0; attempt < 20; attempt++) {
      const started = performance.now();
      const res = await Promise.race([t.app.request("/events", json(events), { peer }), Bun.sleep(WATCHDOG_MS + 5000).then(() => undefined)]);
      if (!res) {
        tally.hung++; // a call the dead (or hung) writer never answered
        return;
      }
      if (res.status === 200) {
        const { stored } = (await res.json()) as { stored: number };
        tally.stored += stored;
        for (const e of events) tally.acked.add(`${uuid}/${e.id}`);
        break;
      }
      tally.refused.push({ status: res.status, ms: performance.now() - started });
      await Bun.sleep(10);
    }
  }
}

/** Every stored event of these devices as "uuid/id", as often as it is stored. */
async function storedEvents(t: Gw, uuids: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const uuid of uuids) for (const e of await t.gw.store.listEvents(uuid, { limit: 10_000 })) out.push(`${uuid}/${e.id}`);
  return out.sort();
}

/** `refusedWithin`: how long a refused call may wait for its 503 (a crash: at once; a hang: the watchdog's bound). */
async function crashScenario(fault: string, reason: string, refusedWithin = 1000) {
  const t = await gatewayWithFault(fault, 3);
  try {
    const devices = await Promise.all(Array.from({ length: 4 }, () => t.register()));
    captureLog();
    const tally: Tally = { acked: new Set(), refused: [], stored: 0, hung: 0 };
    await Promise.all(devices.map((d) => device(t, d.peer, d.uuid, 8, tally)));
    // The next POST /events after the death is stored.
    const d = devices[0]!;
    const res = await t.app.request("/events", json([anEvent(`${d.uuid}-after`)]), { peer: d.peer });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ received: 1, stored: 1 });
    tally.acked.add(`${d.uuid}/${d.uuid}-after`);

    expect(tally.hung).toBe(0);
    expect(tally.refused.length).toBeGreaterThan(0); // the fault fired on a batch in flight
    for (const r of tally.refused) {
      expect(r.status).toBe(503);
      expect(r.ms).toBeLessThan(refusedWithin);
    }
    expect(tally.acked.size).toBe(4 * 8 * 5 + 1);
    expect(await storedEvents(t, devices.map((x) => x.uuid))).toEqual([...tally.acked].sort()); // each once
    // One line per restart, naming the cause.
    const restarts = logged.filter((l) => l.includes("SQLite writer thread stopped"));
    expect(restarts).toHaveLength(1);
    expect(restarts[0]).toContain(reason);
    expect(restarts[0]).toContain("restart 1 in 0 ms");
    return tally;
  } finally {
    console.error = consoleError;
    await t.close();
  }
}

describe("SQLite writer thread death", () => {
  test("a crash before the commit: the batch in flight gets 503 within a second, devices retry, every acknowledged event is stored once", async () => {
    const tally = await crashScenario("writer-crash", "stopped: fault point writer-crash: the writer thread crashed before committing");
    expect(tally.stored).toBe(4 * 8 * 5); // nothing of the crashed batch had committed
  }, 60_000);

  test("a crash after the commit: the retried events are recognised as stored, not doubled", async () => {
    const tally = await crashScenario("writer-crash-after-commit", "fault point writer-crash-after-commit");
    expect(tally.stored).toBeLessThan(4 * 8 * 5); // the crashed batch had committed: its retry stored nothing new
  }, 60_000);

  test("an exit of the thread (no error) is a death too: the batch in flight gets 503, the writer restarts", async () => {
    const tally = await crashScenario("writer-exit", "stopped: it exited with code 70");
    expect(tally.stored).toBe(4 * 8 * 5);
  }, 60_000);

  test("a hang after the commit (the answer never comes): the watchdog ends the thread after its bound, the batch in flight gets 503, its retry is recognised as stored, not doubled", async () => {
    const tally = await crashScenario("writer-hang", "(hung) and was terminated", WATCHDOG_MS + 3000);
    expect(tally.refused.some((r) => r.ms >= WATCHDOG_MS)).toBe(true); // the hung call waited for the bound, no less
    expect(tally.stored).toBeLessThan(4 * 8 * 5); // the hung batch had committed: its retry stored nothing new
  }, 60_000);

  test("a hang inside the transaction, holding the write lock: the lock is free after the watchdog ends the thread, the new thread stores the retries", async () => {
    const tally = await crashScenario("writer-hang-before-commit", "(hung) and was terminated", WATCHDOG_MS + 3000);
    expect(tally.stored).toBe(4 * 8 * 5); // nothing of the hung batch had committed
  }, 60_000);

  test("apps-states and sightings after a death go to the new thread", async () => {
    const t = await gatewayWithFault("writer-crash", 1);
    try {
      const d = await t.register();
      captureLog();
      const first = await t.app.request("/events", json([anEvent("x-1")]), { peer: d.peer });
      expect(first.status).toBe(503);
      const states = { deviceTime: "t", apps: { httpd: { uri: "r/x@sha256:1", state: "healthy" as const, services: [] } } };
      expect((await t.app.request("/apps-states", json(states), { peer: d.peer })).status).toBe(204);
      expect(await t.gw.store.getAppsStates(d.uuid)).toEqual(states);
      await t.gw.store.recordSightings([{ uuid: d.uuid, at: "2031-01-01T00:00:00.000Z", currentTarget: "t-2" }]);
      expect(await t.gw.store.getDevice(d.uuid)).toMatchObject({ lastSeen: "2031-01-01T00:00:00.000Z", currentTarget: "t-2" });
    } finally {
      console.error = consoleError;
      await t.close();
    }
  }, 60_000);

  test("a thread that keeps dying is restarted at a bounded rate, and calls meanwhile fail at once", async () => {
    const dir = await mkdtemp(join(tmpdir(), "writer-death-"));
    const lines: string[] = [];
    // A directory is no database: every thread's open fails and the thread stops.
    const w = new EventWriter(dir, { log: (l) => lines.push(l) });
    try {
      const started = performance.now();
      await expect(w.append("d", [anEvent("e-1")])).rejects.toThrow(WriterUnavailableError);
      expect(performance.now() - started).toBeLessThan(1000);
      // Deaths at about 0, 0, 0.5 s, 1.5 s: restarts at once, then after 0.5, 1 and 2 s. Waits for
      // the 4th death (not a fixed sleep: on a loaded machine each thread takes longer to die).
      await until("the writer thread's 4th death logged", () => lines.length, (n) => n >= 4, 15_000);
      const spread = performance.now() - started;
      expect(lines.length).toBe(4);
      expect(spread).toBeGreaterThanOrEqual(1400); // 0.5 + 1 s of waits at least: the rate is bounded
      expect(lines[0]).toContain("restart 1 in 0 ms");
      expect(lines[1]).toContain("restart 2 in 500 ms");
      expect(lines[2]).toContain("restart 3 in 1000 ms");
      expect(lines[3]).toContain("restart 4 in 2000 ms");
      expect(lines.at(-1)).toMatch(/unable to open database file/);
      // While a restart waits (the 4th: 2 s), a call fails at once, naming why.
      const t0 = performance.now();
      const err = await w.tryLease("l", "me", 1000).catch((e: unknown) => e);
      expect(performance.now() - t0).toBeLessThan(50);
      expect(err).toBeInstanceOf(WriterUnavailableError);
      expect((err as Error).message).toMatch(/Cannot take the lease l: the SQLite writer thread is unavailable \(it stopped .* and restarts in \d+ ms\)/);
    } finally {
      await w.close();
      await rm(dir, { recursive: true, force: true });
    }
    const after = lines.length;
    await Bun.sleep(2500);
    expect(lines.length).toBe(after); // a closed writer restarts nothing
  }, 30_000);
});
