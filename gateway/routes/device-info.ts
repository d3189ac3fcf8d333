/** GET /device: what the gateway knows about the calling device (and only it). */
import { Hono } from "hono";
import type { DeviceInfo } from "../../lib/api/index.ts";
import type { GatewayEnv } from "../env.ts";
import { requireDevice } from "../devices/auth.ts";

export const deviceInfo = new Hono<GatewayEnv>().get("/device", requireDevice, async (c) => {
  // Fresh from the store (not the cache), with a pending check-in that changed it (settled()).
  await c.var.gw.sightings.settled();
  const d = (await c.var.gw.store.getDevice(c.var.device.uuid)) ?? c.var.device;
  const body: DeviceInfo = {
    uuid: d.uuid,
    name: d.name,
    tag: d.tags[0] ?? "",
    tags: d.tags,
    hardwareId: d.hardwareId,
    created_at: d.createdAt,
    last_seen: d.lastSeen,
    currentTarget: d.currentTarget,
    apps: d.apps,
    labels: d.labels ?? {},
  };
  return c.json(body);
});
