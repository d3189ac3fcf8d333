/**
 * Device authentication: the identity is the verified client certificate the
 * transport put in `c.env.peer`, never anything in the body. The certificate
 * must be the device's current one (same serial) and the device not revoked.
 *
 * @module
 */
import { createMiddleware } from "hono/factory";
import { HTTPException } from "hono/http-exception";
import type { GatewayEnv } from "../env.ts";

export const requireDevice = createMiddleware<GatewayEnv>(async (c, next) => {
  const peer = c.env?.peer;
  if (!peer) throw new HTTPException(401, { message: "Device authentication required: no verified client certificate" });
  const gw = c.var.gw;
  const device = await gw.devices.get(peer.cn);
  if (!device) throw new HTTPException(403, { message: "Device not registered: unknown certificate subject" });
  if (device.revokedAt) throw new HTTPException(403, { message: "Device revoked: this certificate is no longer accepted" });
  if (device.certSerial !== peer.serial)
    throw new HTTPException(403, { message: "Device certificate superseded: the device registered again with a new certificate" });
  c.set("device", device);
  gw.sightings.note(device.uuid, {
    tags: c.req.header("x-ats-tags"),
    target: c.req.header("x-ats-target"),
    apps: c.req.header("x-ats-dockerapps"),
  });
  await next();
});
