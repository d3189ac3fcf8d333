/**
 * GET /repo/<file>.json: the signed TUF metadata devices poll (docs/formats.md); preload and
 * `gateway export` read it with a token. A device is answered with its signed view (docs/signed-views.md): the
 * targets a rollout still holds back from it are not in it. An API token (admin, publish, viewer)
 * gets the main chain.
 *
 * @module
 */
import { Hono } from "hono";
import { createMiddleware } from "hono/factory";
import type { Gateway, GatewayEnv } from "../env.ts";
import type { ViewLookup } from "../ota/views.ts";
import { HTTPException } from "hono/http-exception";
import { checkToken, presentedAdminToken, tokenRefused } from "../admin/auth.ts";
import { requireDevice } from "../devices/auth.ts";

/** The file names served under /repo/ (checked before any lookup). */
export const METADATA_FILE = /^(?:[1-9][0-9]{0,9}\.)?(?:root|timestamp|snapshot|targets)\.json$/;

/** The headers of a metadata answer. */
export const METADATA_HEADERS = { "content-type": "application/json", "cache-control": "no-store" } as const;

/**
 * A device certificate, or (for preload and `gateway export`, which read the metadata without a
 * device) an admin, publish or viewer bearer token: each may already read the same signed targets
 * at GET /admin/targets. A token that is refused is told why (unknown, revoked, expired), 403.
 */
const deviceOrToken = createMiddleware<GatewayEnv>(async (c, next) => {
  const auth = c.req.header("authorization");
  const token = !c.env?.peer && auth && /^Bearer\s/i.test(auth) ? presentedAdminToken(auth) : undefined;
  if (token === undefined) return requireDevice(c, next);
  const check = await checkToken(c.var.gw, token);
  if (!("caller" in check)) throw new HTTPException(403, { message: tokenRefused(check.refused, check.role) });
  return next();
});

/** Per gateway: the newest timestamp version its rollout cache was reloaded for, and the reload under way. */
const freshness = new WeakMap<Gateway, Freshness>();

/**
 * How a device's metadata request finds its view: before a timestamp version is signed with
 * views for the first time, the rollout cache is reloaded (once per version per replica, shared
 * by every request meanwhile). A rollout change is committed before its timestamp bump, so a
 * device never gets a new version signed with an old view, which it would then keep (TUF clients
 * ignore the same version again). Undefined without rollouts: the main chain.
 */
export function deviceView(gw: Gateway, uuid: string): ViewLookup | undefined {
  const rollouts = gw.rollouts;
  if (!rollouts) return undefined;
  return (timestampVersion) => {
    let f = freshness.get(gw);
    if (!f) freshness.set(gw, (f = { version: 0 }));
    if (timestampVersion <= f.version) return rollouts.view(uuid);
    return reloadFor(f, timestampVersion, () => rollouts.refreshViews()).then(() => rollouts.view(uuid));
  };
}

interface Freshness {
  version: number;
  reload?: { version: number; done: Promise<void> };
}

async function reloadFor(f: Freshness, version: number, refresh: () => Promise<void>): Promise<void> {
  while (f.version < version) {
    let r = f.reload;
    if (!r || r.version < version) {
      // A reload started for an older version may have read the rollouts before this one was signed: queue one more.
      const before = r?.done.catch(() => {}) ?? Promise.resolve();
      const next: { version: number; done: Promise<void> } = { version, done: Promise.resolve() };
      next.done = before
        .then(refresh)
        .then(() => void (f.version = Math.max(f.version, version)))
        .finally(() => void (f.reload === next && (f.reload = undefined)));
      f.reload = r = next;
    }
    await r.done;
  }
}

export const repo = new Hono<GatewayEnv>().get("/repo/:file", deviceOrToken, async (c) => {
  const file = c.req.param("file");
  if (!METADATA_FILE.test(file)) return c.json({ error: `Unknown metadata file "${file}"` }, 404);
  const device = c.get("device") as GatewayEnv["Variables"]["device"] | undefined; // unset for a token
  const bytes = await c.var.gw.tuf.metadata(file, device ? deviceView(c.var.gw, device.uuid) : undefined);
  if (!bytes) return c.json({ error: `Metadata "${file}" not found` }, 404);
  return c.body(bytes as Uint8Array<ArrayBuffer>, 200, METADATA_HEADERS);
});
