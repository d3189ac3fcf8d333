/**
 * Devices' statuses as the dashboard shows them (registered, up-to-date, updating, failed,
 * rolled-back, cancelled, offline, never-seen, revoked; with a failure's details), for `devices list` and
 * `devices show`. The status lives in GET /admin/fleet/devices, not in the device rows of /admin/devices,
 * so `devices list` reads its rows there too.
 *
 * @module
 */
import { DEVICE_PAGE_MAX, FleetDeviceList, type FleetDevice } from "../../lib/api/admin.ts";
import { AdminApiError, type AdminClient } from "../../lib/api/admin-client.ts";

/** One device's status, or undefined for a device the fleet view does not have. */
export async function deviceStatus(client: AdminClient, uuid: string): Promise<FleetDevice | undefined> {
  const page = await client.request(FleetDeviceList, "GET", `/admin/fleet/devices?${new URLSearchParams({ uuid, limit: "1" })}`);
  return page.devices.find((d) => d.uuid === uuid);
}

/** A page of `devices list`: the devices after `after` by uuid, each with its status, and the uuid to page on from, if more may follow. */
export interface StatusPage {
  devices: FleetDevice[];
  next?: string;
}

/**
 * One page of devices by uuid, each row with its status, in one request (the rows and their
 * statuses from one read, so a device registered meanwhile cannot crowd another's status out of
 * the page). `next` is set on a full page, as GET /admin/devices sets it.
 *
 * @throws {AdminApiError} The gateway does not page by `after` (an older release): it answered devices from before it.
 */
export async function devicesWithStatus(client: AdminClient, opts: { limit: number; after?: string }): Promise<StatusPage> {
  const limit = Math.min(opts.limit, DEVICE_PAGE_MAX);
  const q = new URLSearchParams({ sort: "uuid", limit: String(limit), ...(opts.after ? { after: opts.after } : {}) });
  const { devices } = await client.request(FleetDeviceList, "GET", `/admin/fleet/devices?${q}`);
  // A gateway before `after` ignores it and answers the first page again: refused, or paging would never end.
  if (opts.after && devices.some((d) => d.uuid <= opts.after!))
    throw new AdminApiError(
      `${client.server} answered devices from before --after ${opts.after}: it is older than this gateway CLI and cannot page this list; run the CLI of the gateway's release`,
      200,
    );
  return devices.length === limit ? { devices, next: devices.at(-1)!.uuid } : { devices };
}
