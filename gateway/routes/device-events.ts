/** POST /events: a device's update events, stored idempotently by id before we answer. */
import { Hono } from "hono";
import { EventBatch, MAX_DEVICE_BODY } from "../../lib/api/index.ts";
import type { GatewayEnv } from "../env.ts";
import { requireDevice } from "../devices/auth.ts";
import { jsonBody, jsonBodyReader } from "../validate.ts";
import { eventsPastRate, oneWriteAtATime } from "../devices/writes.ts";

const limits = { maxBytes: MAX_DEVICE_BODY };

/** The compiled reader of an event batch (the check-in fast path in ./checkin.ts reads with it too). */
export const readEventBatch = jsonBodyReader(EventBatch, limits);

export const deviceEvents = new Hono<GatewayEnv>().post("/events", requireDevice, jsonBody(readEventBatch), (c) => {
  const events = c.req.valid("json");
  return oneWriteAtATime(c.var.gw, c.var.device.uuid, "POST /events", async () => {
    const pastRate = eventsPastRate(c.var.gw, c.var.device.uuid, events.length);
    if (pastRate) return pastRate;
    const stored = await c.var.gw.store.appendEvents(c.var.device.uuid, events);
    return c.json({ received: events.length, stored }, 200);
  });
});
