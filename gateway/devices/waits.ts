/**
 * The push waits (GET /repo/wait) the devices hold on this replica: one TimestampWatch per
 * gateway, made on first use, with the policy of how many waits one device may hold. A home of
 * its own below both the route that holds waits (routes/repo-wait.ts) and the admin route that
 * revokes a device and so ends its waits (admin/devices.ts), so neither reaches into the other;
 * /metrics reads the count of waits ended past the cap from here too.
 *
 * @module
 */
import type { Gateway } from "../env.ts";
import { TimestampWatch } from "../push.ts";

/**
 * fioup holds one wait. A reconnect that overlaps the old connection's teardown would get in even
 * with one allowed (it ends the old wait); two, so that two live holders of one certificate (the
 * old daemon and the new across a restart while a proxy still holds the old one's request, a
 * device cloned with its certificate) do not end each other's waits in turn, each asking again at
 * once after its 204: a request per round trip for as long as both run.
 */
export const MAX_WAITS_PER_DEVICE = 2;

const watches = new WeakMap<Gateway, TimestampWatch>();

/** This replica's watch of `gw`'s signed timestamp, which the held waits hang on. */
export const watchOf = (gw: Gateway): TimestampWatch => {
  let w = watches.get(gw);
  if (!w) watches.set(gw, (w = new TimestampWatch(gw.store.tuf, undefined, MAX_WAITS_PER_DEVICE)));
  return w;
};

/** Waits this replica ended because their device held MAX_WAITS_PER_DEVICE newer ones (for /metrics). */
export const waitsEndedPerDevice = (gw: Gateway): number => watches.get(gw)?.endedPastCap ?? 0;

/** Ends the waits `device` holds on this replica, answered 403: the device was just revoked. */
export function endDeviceWaits(gw: Gateway, device: string): void {
  watches.get(gw)?.endWaitsOf(device);
}
