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

/** The gateway refused the content itself (400/413/422): retrying the same bytes cannot help. */
export const isRejection = (e: unknown) => [400, 413, 422].includes((e as { status?: number })?.status ?? 0);

/**
 * Sends everything queued; returns how many were delivered. Stops quietly at the first
 * failure (the rest stay queued). A batch the gateway rejects as invalid is resent one
 * event at a time and only the events rejected alone are dropped, so one bad event cannot
 * block the queue forever.
 */
export async function flushEvents(db: DeviceDb, client: EventPoster, batch = 100): Promise<{ sent: number; dropped: number; error?: Error }> {
  let sent = 0;
  let dropped = 0;
  for (;;) {
    const rows = db.peekEvents(batch);
    if (rows.length === 0) return { sent, dropped };
    try {
      await client.json("POST", "/events", rows.map((r) => r.event));
    } catch (e) {
      if (!isRejection(e)) return { sent, dropped, error: e as Error };
      for (const r of rows) {
        try {
          await client.json("POST", "/events", [r.event]);
          sent++;
        } catch (e1) {
          if (!isRejection(e1)) return { sent, dropped, error: e1 as Error };
          dropped++;
        }
        db.ackEvents(r.seq);
      }
      continue;
    }
    db.ackEvents(rows[rows.length - 1]!.seq);
    sent += rows.length;
  }
}
