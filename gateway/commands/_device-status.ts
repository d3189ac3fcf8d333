/**
 * Devices' statuses as the dashboard shows them (registered, up-to-date, updating, failed,
 * rolled-back, offline, revoked; with a failure's details), for `devices list` and `devices show`.
 * The status lives in GET /admin/fleet/devices, not in the device rows of /admin/devices.
 *
 * @module
 */
import { FleetDeviceList, type FleetDevice } from "../../lib/api/admin.ts";
import type { AdminClient } from "../../lib/api/admin-client.ts";

/** At most this many status reads at once: a page of 1,000 devices without a burst of 1,000 requests. */
const AT_ONCE = 8;

/** One device's status, or undefined for a device the fleet view does not have. */
export async function deviceStatus(client: AdminClient, uuid: string): Promise<FleetDevice | undefined> {
  const page = await client.request(FleetDeviceList, "GET", `/admin/fleet/devices?${new URLSearchParams({ uuid, limit: "1" })}`);
  return page.devices.find((d) => d.uuid === uuid);
}

/**
 * The statuses of the devices of one page of `devices list`, by uuid: that list pages by uuid
 * (`--after`) and the fleet view by offset, so each device is read on its own (an indexed lookup),
 * a few at a time.
 */
export async function deviceStatuses(client: AdminClient, uuids: string[]): Promise<Map<string, FleetDevice>> {
  const out = new Map<string, FleetDevice>();
  let next = 0;
  const worker = async () => {
    while (next < uuids.length) {
      const uuid = uuids[next++]!;
      const d = await deviceStatus(client, uuid);
      if (d) out.set(uuid, d);
    }
  };
  await Promise.all(Array.from({ length: Math.min(AT_ONCE, uuids.length) }, worker));
  return out;
}
