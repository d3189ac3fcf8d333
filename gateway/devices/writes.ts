/**
 * One write of each kind per device at a time on this replica (POST /events, POST /apps-states,
 * PUT /system_info...). The queues in front of the database (the event queue, STATE_WRITES_MAX)
 * are shared by every device: one device sending many at once (firmware gone wrong, a
 * compromised one) filled them, and every other device's writes were refused 503. fioup sends one
 * at a time; one more while the first is under way is answered 429 with Retry-After, and sent
 * again later (events stay queued on the device). Both ways in (the device fast path in
 * routes/checkin.ts and the Hono routes) call {@link oneWriteAtATime}, so the rule has this one home.
 *
 * @module
 */
import type { Gateway } from "../env.ts";

const underWay = new WeakMap<Gateway, Set<string>>();

/** The answer to a write of a device that has one of that kind under way already. */
export const writeUnderWay = (what: string): Response => {
  const text = JSON.stringify({ error: `This device has a ${what} under way on this gateway: send it again once that one is answered` });
  return new Response(text, { status: 429, headers: { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)), "retry-after": "1" } });
};

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
