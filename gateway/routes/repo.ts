/** GET /repo/<file>.json: the signed TUF metadata devices poll (SPEC §2, §3). */
import { Hono } from "hono";
import type { GatewayEnv } from "../env.ts";
import { requireDevice } from "../devices/auth.ts";

const METADATA_FILE = /^(?:[1-9][0-9]{0,9}\.)?(?:root|timestamp|snapshot|targets)\.json$/;

export const repo = new Hono<GatewayEnv>().get("/repo/:file", requireDevice, async (c) => {
  const file = c.req.param("file");
  if (!METADATA_FILE.test(file)) return c.json({ error: `Unknown metadata file "${file}"` }, 404);
  const bytes = await c.var.gw.tuf.metadata(file);
  if (!bytes) return c.json({ error: `Metadata "${file}" not found` }, 404);
  return c.body(bytes as Uint8Array<ArrayBuffer>, 200, { "content-type": "application/json", "cache-control": "no-store" });
});
