/** /admin/devices: list, show, update history, the groups a device is in, tags, labels and revocation (bodies: lib/api/admin.ts). */
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { DEVICE_PAGE_MAX, DeviceLabelsRequest, DeviceTagsRequest, MAX_DEVICE_LABELS, type DeviceGroupList, type Update } from "../../lib/api/admin.ts";
import type { DeviceEvent } from "../../lib/api/index.ts";
import type { GatewayEnv } from "../env.ts";
import { checkLabel, groupsOfDevice } from "../fleet/query.ts";
import { endDeviceWaits } from "../devices/waits.ts";
import { jsonBody, limit } from "../validate.ts";

/**
 * Groups a device's events by correlation id, in arrival order, each with when the gateway stored
 * it; success comes from EcuInstallationCompleted.
 */
export function groupUpdates(stored: { receivedAt: string; event: DeviceEvent }[]): Update[] {
  const byId = new Map<string, Update & { receivedAt: string[] }>();
  for (const { receivedAt, event: e } of stored) {
    const id = e.event.correlationId;
    let u = byId.get(id);
    if (!u) byId.set(id, (u = { correlationId: id, events: [], receivedAt: [] }));
    u.events.push(e);
    u.receivedAt.push(receivedAt);
    if (e.event.targetName) u.targetName = e.event.targetName;
    if (e.event.version) u.version = e.event.version;
    if (e.eventType.id === "EcuInstallationCompleted" && typeof e.event.success === "boolean") u.success = e.event.success;
    else if (e.event.success === false) u.success = false;
  }
  return [...byId.values()];
}

export const adminDevices = new Hono<GatewayEnv>()
  .get("/devices", async (c) => {
    const limit = Number(c.req.query("limit") ?? DEVICE_PAGE_MAX);
    if (!Number.isInteger(limit) || limit < 1) return c.json({ error: "Invalid limit: expected a positive integer" }, 400);
    // Check-ins are written once a second in a batch: one that changed a device is written now, so the list agrees with `devices show`.
    await c.var.gw.sightings.settled();
    const devices = await c.var.gw.store.listDevices({ limit, after: c.req.query("after") });
    return c.json(devices.length === Math.min(limit, DEVICE_PAGE_MAX) ? { devices, next: devices.at(-1)!.uuid } : { devices });
  })
  .get("/devices/:uuid", async (c) => {
    const { store } = c.var.gw;
    const uuid = c.req.param("uuid");
    await c.var.gw.sightings.settled();
    const device = await store.getDevice(uuid);
    if (!device) return c.json({ error: `Device "${uuid}" not found` }, 404);
    const [appsStates, systemInfo] = await Promise.all([store.getAppsStates(uuid), store.getSystemInfo(uuid)]);
    return c.json({ ...device, appsStates: appsStates ?? null, systemInfo });
  })
  .get("/devices/:uuid/groups", async (c) => {
    const uuid = c.req.param("uuid");
    const { store } = c.var.gw;
    if (!(await store.getDevice(uuid))) return c.json({ error: `Device "${uuid}" not found` }, 404);
    const groups = await store.listGroups();
    const member = new Set((await groupsOfDevice(store, uuid, groups)).map((g) => g.name));
    return c.json({ groups: groups.map((g) => ({ ...g, member: member.has(g.name) })) } satisfies DeviceGroupList);
  })
  .get("/devices/:uuid/updates", async (c) => {
    const uuid = c.req.param("uuid");
    const { store } = c.var.gw;
    if (!(await store.getDevice(uuid))) return c.json({ error: `Device "${uuid}" not found` }, 404);
    const events = await store.listEvents(uuid, { limit: 10000 });
    return c.json({ updates: groupUpdates(events) });
  })
  .post("/devices/:uuid/revoke", async (c) => {
    const uuid = c.req.param("uuid");
    const { store, devices } = c.var.gw;
    if (!(await store.revokeDevice(uuid, new Date().toISOString()))) return c.json({ error: `Device "${uuid}" not found` }, 404);
    devices.invalidate(uuid);
    // Its push waits held here would otherwise still be answered with the next version.
    endDeviceWaits(c.var.gw, uuid);
    return c.json(await store.getDevice(uuid));
  })
  .put("/devices/:uuid/tags", limit(16 * 1024), jsonBody(DeviceTagsRequest), async (c) => {
    const uuid = c.req.param("uuid");
    const { store, devices } = c.var.gw;
    // A tag given twice is one tag, where first given (as the CLI's tagList and x-ats-tags read them).
    const row = await store.setDeviceTags(uuid, [...new Set(c.req.valid("json").tags)]);
    if (!row) return c.json({ error: `Device "${uuid}" not found` }, 404);
    devices.invalidate(uuid);
    return c.json(row);
  })
  .put("/devices/:uuid/labels", limit(64 * 1024), jsonBody(DeviceLabelsRequest), async (c) => {
    const uuid = c.req.param("uuid");
    const { set = {}, remove = [] } = c.req.valid("json");
    for (const [k, v] of Object.entries(set)) checkLabel(k, v);
    for (const k of remove) checkLabel(k, "");
    const both = remove.find((k) => Object.hasOwn(set, k));
    if (both !== undefined) throw new HTTPException(400, { message: `Label "${both}" is both set and removed` });
    const { store, devices } = c.var.gw;
    // At most MAX_DEVICE_LABELS a device, not only a request, so the dashboard's form (all of a
    // device's labels in one request) can always save them. The store checks it in the write's
    // transaction (TooManyLabelsError, a 400), so two requests racing cannot both pass it.
    const row = await store.setDeviceLabels(uuid, set, remove, MAX_DEVICE_LABELS);
    if (!row) return c.json({ error: `Device "${uuid}" not found` }, 404);
    devices.invalidate(uuid);
    return c.json(row);
  });
