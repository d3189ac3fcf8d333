/**
 * /admin/keys: the TUF root and online key rotation.
 * - `GET /admin/keys/root`: the current root.json, to draft the next one from (`gateway keys init-root`).
 * - `POST /admin/keys/root` with a root.json signed offline (`gateway keys sign-root`): installed only if
 *   it carries a threshold of the current and of its own root keys' signatures, so a token alone can
 *   never change who is trusted (docs/keys.md), and only if it lives at least
 *   {@link MIN_ROOT_LIFETIME_SECONDS} (checked here, before the repository is asked).
 * - `POST /admin/keys/rotate {role}`: a new online key for targets, snapshot or timestamp, signed into a
 *   new root by the root key held in the data dir. Root itself is never rotated this way.
 *
 * @module
 */
import { Hono } from "hono";
import { RotateRequest, SignedRoot } from "../../lib/api/admin.ts";
import type { GatewayEnv } from "../env.ts";
import { requireRole } from "./auth.ts";
import { SigningKeyUnavailableError } from "../ota/key-store.ts";
import { InvalidRootError, RootNotTrustedError } from "../ota/repo.ts";
import { jsonBody, limit } from "../validate.ts";
import { formatSeconds } from "../../lib/api/duration.ts";

/**
 * The least lifetime a new root may have, drafted (`gateway keys init-root --expires`) or installed
 * (`POST /admin/keys/root`): the one home of that rule. Once root expires every device refuses
 * every update ("Final root.json is expired"), and only another root signed offline by a threshold
 * of the root key holders replaces it; gathering them takes days. A week leaves time for that next
 * ceremony (the gateway warns from a quarter of the lifetime before the end), where a root of a
 * minute took the fleet down before anyone could react.
 */
export const MIN_ROOT_LIFETIME_SECONDS = 7 * 86400;

/**
 * Why a root expiring at `expires` lives too short a time to draft or install ("expires at ...,
 * less than 7d from now ..."), to follow "it" or "the new root"; undefined when it lives long
 * enough. A date already past, or not a date, is left to the repository's own check.
 */
export function rootLifetimeProblem(expires: string, now = new Date()): string | undefined {
  // In whole seconds, as TUF writes expiry: `init-root --expires 7d` drafts exactly the least.
  const left = Math.floor(Date.parse(expires) / 1000) - Math.floor(now.getTime() / 1000);
  if (!(left > 0) || left >= MIN_ROOT_LIFETIME_SECONDS) return undefined;
  const min = formatSeconds(MIN_ROOT_LIFETIME_SECONDS);
  return (
    `expires at ${expires}, less than ${min} from now: a root must live at least ${min}, ` +
    "since once it expires every device refuses every update until another root signed offline replaces it (docs/keys.md)"
  );
}

const ROOT_BY_TOKEN =
  "Root rotation needs the offline root key(s): draft the next root with `gateway keys init-root`, sign it offline with `gateway keys sign-root`, install it with `gateway keys push-root` (docs/keys.md)";

/** How an online key is rotated once root is offline: by a root signed offline that names the new key. */
const rotateOffline = (role: string) =>
  `With the root key offline, the ${role} key changes by a root signed offline: on the gateway, gateway keys generate --out DIR/tuf/keys/${role}-2; ` +
  `then gateway keys init-root --key ${role}=DIR/tuf/keys/${role}-2.pub.json, sign-root by the root key holders, push-root (docs/keys.md)`;

export const adminKeys = new Hono<GatewayEnv>()
  .get("/keys/root", async (c) => c.body(new TextDecoder().decode(await c.var.gw.tuf.trustedRoot()), 200, { "content-type": "application/json" }))
  .post("/keys/root", requireRole("admin"), limit(64 * 1024), jsonBody(SignedRoot), async (c) => {
    const root = c.req.valid("json");
    const short = rootLifetimeProblem(root.signed.expires);
    if (short) return c.json({ error: `Cannot install root.json: it ${short}` }, 400);
    try {
      const r = await c.var.gw.tuf.updateRoot(JSON.stringify(root));
      return c.json({ rootVersion: r.version, refreshed: r.refreshed });
    } catch (e) {
      if (e instanceof InvalidRootError) return c.json({ error: e.message }, 400);
      if (e instanceof RootNotTrustedError) return c.json({ error: e.message }, 403);
      throw e;
    }
  })
  .post("/keys/rotate", requireRole("admin"), limit(4096), jsonBody(RotateRequest), async (c) => {
    const { role } = c.req.valid("json");
    if (role === "root") return c.json({ error: ROOT_BY_TOKEN }, 403);
    try {
      const { rootVersion } = await c.var.gw.tuf.rotate(role);
      return c.json({ role, rootVersion });
    } catch (e) {
      // With root offline this is the normal state, not a fault: say how such a rotation is done.
      if (!(e instanceof SigningKeyUnavailableError) || e.role !== "root") throw e;
      return c.json({ error: `${e.message}. ${rotateOffline(role)}` }, 409);
    }
  });
