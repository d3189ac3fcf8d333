/**
 * Devices' statuses as the dashboard shows them (registered, up-to-date, updating, failed,
 * rolled-back, cancelled, offline, never-seen, revoked; with a failure's details), for `devices list` and
 * `devices show`. The status lives in GET /admin/fleet/devices, not in the device rows of /admin/devices.
 *
 * @module
 */
import { DEVICE_PAGE_MAX, FleetDeviceList, type FleetDevice } from "../../lib/api/admin.ts";
import type { AdminClient } from "../../lib/api/admin-client.ts";

/** One device's status, or undefined for a device the fleet view does not have. */
export async function deviceStatus(client: AdminClient, uuid: string): Promise<FleetDevice | undefined> {
  const page = await client.request(FleetDeviceList, "GET", `/admin/fleet/devices?${new URLSearchParams({ uuid, limit: "1" })}`);
  return page.devices.find((d) => d.uuid === uuid);
}

/**
 * The statuses of one page of `devices list` (the uuids of a page of GET /admin/devices, in its
 * order), by uuid, in one request: that list pages by uuid, so its page is the fleet view's range
 * from its first uuid to its last, sorted the same way. A device registered into the range
 * meanwhile comes too, and is left out; one revoked or gone meanwhile has no status here.
 */
export async function deviceStatuses(client: AdminClient, uuids: string[]): Promise<Map<string, FleetDevice>> {
  const out = new Map<string, FleetDevice>();
  if (!uuids.length) return out;
  const q = new URLSearchParams({ uuidFrom: uuids[0]!, uuidTo: uuids.at(-1)!, sort: "uuid", limit: String(DEVICE_PAGE_MAX) });
  const page = await client.request(FleetDeviceList, "GET", `/admin/fleet/devices?${q}`);
  const wanted = new Set(uuids);
  for (const d of page.devices) if (wanted.has(d.uuid)) out.set(d.uuid, d);
  return out;
}
