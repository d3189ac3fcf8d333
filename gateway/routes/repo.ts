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
import { PinnedViews, type View, type ViewAsked, type ViewLookup } from "../ota/views.ts";
import { HTTPException } from "hono/http-exception";
import { checkToken, presentedAdminToken, tokenRefused } from "../admin/auth.ts";
import { requireDevice } from "../devices/auth.ts";
import { checkinList, DEVICE_TAGS_HEADER, isTag } from "../../lib/api/index.ts";
import type { DeviceRow } from "../store/types.ts";

/** The file names served under /repo/ (checked before any lookup). */
export const METADATA_FILE = /^(?:[1-9][0-9]{0,9}\.)?(?:root|timestamp|snapshot|targets)\.json$/;

/** The headers of a metadata answer. */
export const METADATA_HEADERS: Readonly<Record<string, string>> = Object.freeze({ "content-type": "application/json", "cache-control": "no-store" });

/** Per tag list, the headers of a timestamp answer that says it (shared: the fast path keeps a serialised head per object). */
const withTags = new Map<string, Readonly<Record<string, string>>>();
/** Per device row's tags array (a cached row keeps its array): the answer's headers, found without building the list again. */
const byTagsArray = new WeakMap<readonly string[], Readonly<Record<string, string>>>();

/**
 * The headers of a metadata answer to `device` (undefined: a token): on timestamp.json, the start
 * of every check, a device whose tags the gateway decides (not its own to choose) is told them
 * (DEVICE_TAGS_HEADER, lib/api/device.ts; fioup follows them: fioup/update/gateway-tags.ts).
 * One object per tag list, so a caller may key what it derives from it by identity.
 */
export function metadataHeaders(device: Pick<DeviceRow, "tags" | "tagsFromDevice"> | undefined, file: string): Readonly<Record<string, string>> {
  if (!device || device.tagsFromDevice || !device.tags.length || file !== "timestamp.json") return METADATA_HEADERS;
  let headers = byTagsArray.get(device.tags);
  if (headers) return headers;
  // Tags only (a row stored before the tag rule may hold anything): what the device would keep, and a header can carry.
  const tags = checkinList(device.tags.filter(isTag));
  headers = tags ? withTags.get(tags) : METADATA_HEADERS;
  if (!headers) {
    if (withTags.size >= 4096) withTags.clear();
    withTags.set(tags, (headers = Object.freeze({ ...METADATA_HEADERS, [DEVICE_TAGS_HEADER]: tags })));
  }
  byTagsArray.set(device.tags, headers);
  return headers;
}

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

/** Per gateway: the newest timestamp version its rollout cache was reloaded for, the reload under way, and the views its devices' timestamps pinned. */
const perGateway = new WeakMap<Gateway, DeviceViews>();

/**
 * How a device's metadata request finds its view: before a timestamp version is signed with
 * views for the first time, the rollout cache is reloaded (once per version per replica, shared
 * by every request meanwhile). A rollout change is committed before its timestamp bump, so a
 * device never gets a new version signed with an old view, which it would then keep (TUF clients
 * ignore the same version again). The view a device's timestamp' is made in is remembered for a
 * short while: a superseded snapshot or targets version it asks for next is the one that
 * timestamp' pinned, and is answered in that view even if the device's view changed meanwhile
 * (docs/signed-views.md, "One view per check"). Undefined without rollouts: the main chain.
 */
export function deviceView(gw: Gateway, uuid: string): ViewLookup | undefined {
  const rollouts = gw.rollouts;
  if (!rollouts) return undefined;
  return (timestampVersion, asked) => {
    let d = perGateway.get(gw);
    if (!d) perGateway.set(gw, (d = { version: 0, pinned: new PinnedViews() }));
    const pinned = d.pinned;
    const before = asked === "superseded" ? pinned.recall(uuid) : undefined;
    if (before) return before;
    if (timestampVersion <= d.version) return served(pinned, uuid, asked, rollouts.view(uuid));
    return reloadFor(d, timestampVersion, () => rollouts.refreshViews()).then(() => served(pinned, uuid, asked, rollouts.view(uuid)));
  };
}

/** The view a request is answered in; a timestamp's is remembered for the device's next requests. */
function served(pinned: PinnedViews, uuid: string, asked: ViewAsked, view: View): View {
  if (asked === "timestamp") pinned.remember(uuid, view);
  return view;
}

interface DeviceViews {
  version: number;
  reload?: { version: number; done: Promise<void> };
  pinned: PinnedViews;
}

async function reloadFor(f: DeviceViews, version: number, refresh: () => Promise<void>): Promise<void> {
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
  return c.body(bytes as Uint8Array<ArrayBuffer>, 200, metadataHeaders(device, file));
});
