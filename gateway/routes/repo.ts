/** GET /repo/<file>.json: the signed TUF metadata devices poll (docs/formats.md); preload reads it with the admin token. */
import { Hono } from "hono";
import { createMiddleware } from "hono/factory";
import type { GatewayEnv } from "../env.ts";
import { isAdmin } from "../admin/auth.ts";
import { requireDevice } from "../devices/auth.ts";

/** The file names served under /repo/ (checked before any lookup). */
export const METADATA_FILE = /^(?:[1-9][0-9]{0,9}\.)?(?:root|timestamp|snapshot|targets)\.json$/;

/** The headers of a metadata answer. */
export const METADATA_HEADERS = { "content-type": "application/json", "cache-control": "no-store" } as const;

/** A device certificate, or (for preload, which builds images before any device exists) the admin bearer token. */
const deviceOrAdmin = createMiddleware<GatewayEnv>(async (c, next) => {
  const auth = c.req.header("authorization");
  if (!c.env?.peer && auth && /^Bearer\s/i.test(auth) && isAdmin(auth, c.var.gw.adminToken)) return next();
  return requireDevice(c, next);
});

export const repo = new Hono<GatewayEnv>().get("/repo/:file", deviceOrAdmin, async (c) => {
  const file = c.req.param("file");
  if (!METADATA_FILE.test(file)) return c.json({ error: `Unknown metadata file "${file}"` }, 404);
  const bytes = await c.var.gw.tuf.metadata(file);
  if (!bytes) return c.json({ error: `Metadata "${file}" not found` }, 404);
  return c.body(bytes as Uint8Array<ArrayBuffer>, 200, METADATA_HEADERS);
});
