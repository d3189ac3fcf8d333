/**
 * /admin/groups: static groups (a list of devices) and dynamic groups (a
 * query over labels, tags, hardware id and name, evaluated when used; the
 * language is in gateway/fleet/query.ts). Bodies: lib/api/admin.ts.
 *
 * @module
 */
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { GroupMembersRequest, GroupRequest, type GroupDetail, type GroupList, type GroupMembersChanged, type GroupRow } from "../../lib/api/admin.ts";
import type { GatewayEnv } from "../env.ts";
import { groupAudience, parseFleetQuery } from "../fleet/query.ts";
import { jsonBody, limit } from "../validate.ts";
import type { Store } from "../store/types.ts";
import { namedFew } from "../../lib/cli/few.ts";

/**
 * The non-revoked devices a group means now ({@link groupAudience}, as a rollout takes them); sorted
 * here by code unit, as paging compares (a PostgreSQL collation may order uuids otherwise).
 */
const devicesOf = async (store: Store, g: GroupRow) => (await groupAudience(store, g)).sort();

/** `"a", "b", "c", "d", "e" and 2 more` */
const named = (uuids: string[]) => namedFew(uuids.map((u) => `"${u}"`), 5);

/**
 * 400 naming up to five uuids that are not registered devices, else up to five that are revoked: a
 * revoked device is in no audience, so a group that lists it would count or release to nobody more.
 */
async function refuseUnusable(store: Store, uuids: string[]) {
  const known = new Map((await store.knownDevices(uuids)).map((d) => [d.uuid, d.revokedAt]));
  const distinct = [...new Set(uuids)];
  const unknown = distinct.filter((u) => !known.has(u));
  if (unknown.length) throw new HTTPException(400, { message: `Unknown device${unknown.length > 1 ? "s" : ""} ${named(unknown)}` });
  const revoked = distinct.filter((u) => known.get(u) !== null);
  if (revoked.length)
    throw new HTTPException(400, { message: `Revoked device${revoked.length > 1 ? "s" : ""} ${named(revoked)}: a revoked device is never in a group's audience` });
}

async function groupOr404(store: Store, name: string): Promise<GroupRow> {
  const g = await store.getGroup(name);
  if (!g) throw new HTTPException(404, { message: `Group "${name}" not found` });
  return g;
}

export const adminGroups = new Hono<GatewayEnv>()
  .get("/groups", async (c) => {
    const { store } = c.var.gw;
    const rows = await store.listGroups();
    const groups = await Promise.all(
      rows.map(async (g) => ({ ...g, devices: (await devicesOf(store, g)).length })),
    );
    return c.json({ groups } satisfies GroupList);
  })
  .post("/groups", limit(1024 * 1024), jsonBody(GroupRequest), async (c) => {
    const req = c.req.valid("json");
    const { store } = c.var.gw;
    if (req.query !== undefined && req.devices?.length) throw new HTTPException(400, { message: "A dynamic group (query) has no device list: give query or devices, not both" });
    if (req.query !== undefined) parseFleetQuery(req.query); // a clear 400 before anything is stored
    if (req.devices?.length) await refuseUnusable(store, req.devices);
    const row: GroupRow = { name: req.name, kind: req.query !== undefined ? "dynamic" : "static", query: req.query ?? null, createdAt: new Date().toISOString() };
    await store.createGroup(row);
    if (req.devices?.length) await store.addGroupMembers(row.name, req.devices);
    const members = await devicesOf(store, row);
    return c.json({ ...row, devices: members.length, members: members.slice(0, 1000), ...(members.length > 1000 ? { next: members[999] } : {}) } satisfies GroupDetail, 201);
  })
  .get("/groups/:name", async (c) => {
    const { store } = c.var.gw;
    const g = await groupOr404(store, c.req.param("name"));
    const n = Number(c.req.query("limit") ?? 1000);
    if (!Number.isInteger(n) || n < 1 || n > 10_000) throw new HTTPException(400, { message: "Invalid limit: expected an integer from 1 to 10000" });
    const after = c.req.query("after") ?? "";
    const all = await devicesOf(store, g);
    const page = all.filter((u) => u > after).slice(0, n);
    const more = page.length === n && all.at(-1)! > page.at(-1)!;
    return c.json({ ...g, devices: all.length, members: page, ...(more ? { next: page.at(-1)! } : {}) } satisfies GroupDetail);
  })
  .delete("/groups/:name", async (c) => {
    const name = c.req.param("name");
    if (!(await c.var.gw.store.deleteGroup(name))) throw new HTTPException(404, { message: `Group "${name}" not found` });
    return c.json({ name });
  })
  .post("/groups/:name/members", limit(1024 * 1024), jsonBody(GroupMembersRequest), async (c) => {
    const { store } = c.var.gw;
    const g = await groupOr404(store, c.req.param("name"));
    if (g.kind === "dynamic")
      throw new HTTPException(409, { message: `Group "${g.name}" is dynamic (${g.query}): its members follow its query; change the devices' labels or tags instead` });
    const { add = [], remove = [] } = c.req.valid("json");
    if (!add.length && !remove.length) throw new HTTPException(400, { message: "Nothing to change: give add or remove" });
    if (add.length) await refuseUnusable(store, add);
    const removed = remove.length ? await store.removeGroupMembers(g.name, remove) : 0;
    const added = add.length ? await store.addGroupMembers(g.name, add) : 0;
    const devices = (await devicesOf(store, g)).length;
    return c.json({ name: g.name, added, removed, devices } satisfies GroupMembersChanged);
  });
