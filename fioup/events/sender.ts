/**
 * Delivers queued events in order: the oldest batch is POSTed to /events and
 * deleted only once the gateway accepted it, so events survive restarts and
 * an unreachable gateway.
 *
 * @module
 */
import type { DeviceDb } from "../db.ts";

export interface EventPoster {
  json<T>(method: string, path: string, body?: unknown): Promise<T | undefined>;
}

/** Sends everything queued; returns how many were delivered. Stops quietly at the first failure. */
export async function flushEvents(db: DeviceDb, client: EventPoster, batch = 100): Promise<{ sent: number; error?: Error }> {
  let sent = 0;
  for (;;) {
    const rows = db.peekEvents(batch);
    if (rows.length === 0) return { sent };
    try {
      await client.json("POST", "/events", rows.map((r) => r.event));
    } catch (e) {
      return { sent, error: e as Error };
    }
    db.ackEvents(rows[rows.length - 1]!.seq);
    sent += rows.length;
  }
}
