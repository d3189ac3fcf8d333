/**
 * One write of each kind per device at a time on this replica (POST /events, POST /apps-states,
 * PUT /system_info...). The queues in front of the database (the event queue, STATE_WRITES_MAX)
 * are shared by every device: one device sending many at once (firmware gone wrong, a
 * compromised one) filled them, and every other device's writes were refused 503. fioup sends one
 * at a time; one more while the first is under way is answered 429 with Retry-After, and sent
 * again later (events stay queued on the device). Both ways in (the device fast path in
 * routes/checkin.ts and the Hono routes) call {@link oneWriteAtATime}, so the rule has this one
 * home, as has the rate of events a device may send ({@link eventsPastRate}).
 *
 * @module
 */
import type { Gateway } from "../env.ts";

const underWay = new WeakMap<Gateway, Set<string>>();

/** A 429 saying `error`, to be sent again after `retryAfter` seconds. */
function tooMany(error: string, retryAfter: number): Response {
  const text = JSON.stringify({ error });
  return new Response(text, { status: 429, headers: { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)), "retry-after": String(retryAfter) } });
}

/** The answer to a write of a device that has one of that kind under way already. */
export const writeUnderWay = (what: string): Response => tooMany(`This device has a ${what} under way on this gateway: send it again once that one is answered`, 1);

/**
 * Runs `write` unless `device` has a write of `what` under way on this replica; then answers
 * {@link writeUnderWay} at once.
 */
export function oneWriteAtATime<T>(gw: Gateway, device: string, what: string, write: () => Promise<T>): Promise<T | Response> {
  let set = underWay.get(gw);
  if (!set) underWay.set(gw, (set = new Set()));
  const key = `${what}\0${device}`;
  if (set.has(key)) return Promise.resolve(writeUnderWay(what));
  set.add(key);
  const done = set;
  return write().finally(() => done.delete(key));
}

/**
 * Events one device may have taken per minute on a replica. fioup sends a few per update, and the
 * queue it saved while offline (at most 8 MiB, some 16,000 events) in batches of 100 at each
 * daemon cycle, stopping at the first refusal: at this rate a full queue goes in two cycles, so a
 * device's update result behind it is not held back for long. A device sending without end
 * (firmware in a loop, a compromised one) filled the database's disk for everyone, one POST after
 * another, tens of thousands a second. Past it the POST is answered 429, with Retry-After to the
 * minute's end, and the device keeps the events queued.
 */
export const EVENTS_PER_MINUTE = 10_000;

const eventCounts = new WeakMap<Gateway, { minute: number; byDevice: Map<string, number> }>();

/**
 * Counts `n` events of `device` against {@link EVENTS_PER_MINUTE}; the 429 to answer when they
 * would go past it (then nothing is counted), else undefined. Only this minute's devices are kept.
 */
export function eventsPastRate(gw: Gateway, device: string, n: number, now = Date.now()): Response | undefined {
  const minute = Math.floor(now / 60_000);
  let c = eventCounts.get(gw);
  if (!c || c.minute !== minute) eventCounts.set(gw, (c = { minute, byDevice: new Map() }));
  const had = c.byDevice.get(device) ?? 0;
  // A first POST of a minute is taken whatever its size (a batch is at most 500): only a device past the rate waits.
  if (had > 0 && had + n > EVENTS_PER_MINUTE) {
    return tooMany(`This device sent more than ${EVENTS_PER_MINUTE} events in a minute: send the rest after it`, Math.max(1, Math.ceil(((minute + 1) * 60_000 - now) / 1000)));
  }
  c.byDevice.set(device, had + n);
  return undefined;
}
