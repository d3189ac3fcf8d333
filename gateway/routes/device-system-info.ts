/** PUT /system_info, /system_info/network, /system_info/config: the device's inventory. */
import { Hono } from "hono";
import { MAX_DEVICE_BODY, NetworkInfo, SystemConfig, SystemInfo } from "../../lib/api/index.ts";
import type { GatewayEnv } from "../env.ts";
import { requireDevice } from "../devices/auth.ts";
import { jsonBody, limit } from "./_validate.ts";

export const deviceSystemInfo = new Hono<GatewayEnv>()
  .use("/system_info", requireDevice, limit(MAX_DEVICE_BODY))
  .use("/system_info/*", requireDevice, limit(MAX_DEVICE_BODY))
  .put("/system_info", jsonBody(SystemInfo), async (c) => {
    await c.var.gw.store.putSystemInfo(c.var.device.uuid, "hardware", c.req.valid("json"));
    return c.body(null, 204);
  })
  .put("/system_info/network", jsonBody(NetworkInfo), async (c) => {
    await c.var.gw.store.putSystemInfo(c.var.device.uuid, "network", c.req.valid("json"));
    return c.body(null, 204);
  })
  .put("/system_info/config", jsonBody(SystemConfig), async (c) => {
    await c.var.gw.store.putSystemInfo(c.var.device.uuid, "config", c.req.valid("json"));
    return c.body(null, 204);
  });
