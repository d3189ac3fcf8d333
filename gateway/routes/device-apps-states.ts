/** POST /apps-states: the state of the device's running apps (sent when it changes). */
import { Hono } from "hono";
import { AppsStates, MAX_DEVICE_BODY } from "../../lib/api/index.ts";
import type { GatewayEnv } from "../env.ts";
import { requireDevice } from "../devices/auth.ts";
import { jsonBody, jsonBodyReader } from "../validate.ts";
import { oneWriteAtATime } from "../devices/writes.ts";

const limits = { maxBytes: MAX_DEVICE_BODY };

/** The compiled reader of an apps-states body (the check-in fast path in ./checkin.ts reads with it too). */
export const readAppsStates = jsonBodyReader(AppsStates, limits);

export const deviceAppsStates = new Hono<GatewayEnv>().post(
  "/apps-states",
  requireDevice,
  jsonBody(readAppsStates),
  (c) =>
    oneWriteAtATime(c.var.gw, c.var.device.uuid, "POST /apps-states", async () => {
      await c.var.gw.store.putAppsStates(c.var.device.uuid, c.req.valid("json"));
      return c.body(null, 204);
    }),
);
