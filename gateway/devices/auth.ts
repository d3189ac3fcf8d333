/**
 * Device authentication: the identity is the verified client certificate the
 * transport put in `c.env.peer`, never anything in the body. The certificate
 * must be the device's current one (same serial) and the device not revoked.
 *
 * @module
 */
import { createMiddleware } from "hono/factory";
import { HTTPException } from "hono/http-exception";
import type { GatewayEnv, PeerIdentity } from "../env.ts";
import type { DeviceRow } from "../store/types.ts";
import type { DeviceCache } from "./cache.ts";
import type { Sightings } from "./sightings.ts";

/** Why a verified certificate is not accepted as a device, or the device it belongs to. */
export type DeviceCheck = { device: DeviceRow } | { refused: string };

/**
 * The one device-identity check: the certificate's subject must be a registered device, not
 * revoked, and the certificate must be its current one (same serial).
 */
/** What a revoked device's certificate is answered (the device routes, the registry, a held push wait). */
export const DEVICE_REVOKED = "Device revoked: this certificate is no longer accepted";

export async function checkDevice(devices: DeviceCache, peer: PeerIdentity): Promise<DeviceCheck> {
  const device = await devices.get(peer.cn);
  if (!device) return { refused: "Device not registered: unknown certificate subject" };
  if (device.revokedAt) return { refused: DEVICE_REVOKED };
  if (device.certSerial !== peer.serial) return { refused: "Device certificate superseded: the device registered again with a new certificate" };
  return { device };
}

/** checkDevice's verdict when the device cache has a fresh row (no await, no allocation): the device, or undefined for "ask checkDevice". */
export function cachedDeviceInGoodStanding(devices: DeviceCache, peer: PeerIdentity): DeviceRow | undefined {
  const device = devices.fresh(peer.cn)?.row;
  return device && !device.revokedAt && device.certSerial === peer.serial ? device : undefined;
}

/** Records a device's check-in headers (fioup's x-ats-*) for the batched last-seen write; `headers`: a web Request's, or the transport's parsed head's. */
export function noteCheckIn(sightings: Sightings, device: DeviceRow, headers: { get(name: string): string | null }) {
  sightings.note(
    device.uuid,
    // Tags come from the registration token or the admin; what a device reports sets them only if its
    // token allowed it (the store decides), and is kept as the tags it follows either way.
    headers.get("x-ats-tags"),
    headers.get("x-ats-target"),
    headers.get("x-ats-dockerapps"),
    device,
  );
}

/**
 * The device a verified certificate belongs to, if it is registered, not revoked and the certificate
 * is its current one: at once from a fresh cache entry (no promise per check-in), else through checkDevice.
 */
export function deviceInGoodStanding(devices: DeviceCache, peer: PeerIdentity): DeviceRow | undefined | Promise<DeviceRow | undefined> {
  const cached = cachedDeviceInGoodStanding(devices, peer);
  if (cached) return cached;
  return checkDevice(devices, peer).then(deviceOf);
}
const deviceOf = (r: DeviceCheck) => ("device" in r ? r.device : undefined);

export const requireDevice = createMiddleware<GatewayEnv>(async (c, next) => {
  const peer = c.env?.peer;
  if (!peer) throw new HTTPException(401, { message: "Device authentication required: no verified client certificate" });
  const gw = c.var.gw;
  let device = cachedDeviceInGoodStanding(gw.devices, peer);
  if (!device) {
    const r = await checkDevice(gw.devices, peer);
    if ("refused" in r) throw new HTTPException(403, { message: r.refused });
    device = r.device;
  }
  c.set("device", device);
  noteCheckIn(gw.sightings, device, c.req.raw.headers);
  await next();
});
