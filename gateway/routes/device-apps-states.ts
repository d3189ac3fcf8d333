/** POST /apps-states: the state of the device's running apps (sent when it changes). */
import { Hono } from "hono";
import { AppsStates, MAX_DEVICE_BODY } from "../../lib/api/index.ts";
import type { GatewayEnv } from "../env.ts";
import { requireDevice } from "../devices/auth.ts";
import { jsonBody } from "./_validate.ts";

export const deviceAppsStates = new Hono<GatewayEnv>().post(
  "/apps-states",
  requireDevice,
  jsonBody(AppsStates, { maxBytes: MAX_DEVICE_BODY }),
  async (c) => {
    await c.var.gw.store.putAppsStates(c.var.device.uuid, c.req.valid("json"));
    return c.body(null, 204);
  },
);
