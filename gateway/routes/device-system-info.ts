/** PUT /system_info, /system_info/network, /system_info/config: the device's inventory. */
import type { TSchema } from "@sinclair/typebox";
import { Hono } from "hono";
import { MAX_DEVICE_BODY, NetworkInfo, SystemConfig, SystemInfo } from "../../lib/api/index.ts";
import type { GatewayEnv } from "../env.ts";
import { requireDevice } from "../devices/auth.ts";
import type { SystemInfoKind } from "../store/types.ts";
import { jsonBody } from "../validate.ts";
import { oneWriteAtATime } from "../devices/writes.ts";

const inventory = <T extends TSchema>(app: Hono<GatewayEnv>, path: string, kind: SystemInfoKind, schema: T) =>
  app.put(path, requireDevice, jsonBody(schema, { maxBytes: MAX_DEVICE_BODY }), (c) =>
    oneWriteAtATime(c.var.gw, c.var.device.uuid, `PUT ${path}`, async () => {
      await c.var.gw.store.putSystemInfo(c.var.device.uuid, kind, c.req.valid("json"));
      return c.body(null, 204);
    }),
  );

export const deviceSystemInfo = new Hono<GatewayEnv>();
inventory(deviceSystemInfo, "/system_info", "hardware", SystemInfo);
inventory(deviceSystemInfo, "/system_info/network", "network", NetworkInfo);
inventory(deviceSystemInfo, "/system_info/config", "config", SystemConfig);
