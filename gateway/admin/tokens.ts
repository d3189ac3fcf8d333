/**
 * /admin/tokens: registration tokens and publish/admin API tokens (bodies:
 * lib/api/admin.ts). The secret is shown once; only its sha256 is kept.
 * And /admin/whoami: what a client asks before a job, so it refuses one it
 * cannot finish before starting it (its token's role, whether targets can
 * be signed now).
 *
 * @module
 */
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { TokenRequest, type WhoAmI, type ApiTokenInfo, type RegistrationTokenInfo, type TokenCreated, type TokenList } from "../../lib/api/admin.ts";
import type { GatewayEnv } from "../env.ts";
import { newToken } from "../pki/tokens.ts";
import { jsonBody, limit } from "../validate.ts";
import { parseDuration } from "../../lib/api/duration.ts";

const DEFAULT_LIFETIME = { registration: "30d", publish: "365d", admin: "365d", viewer: "365d" } as const;

export const adminTokens = new Hono<GatewayEnv>()
  .get("/whoami", async (c) => {
    const { gw } = c.var;
    // The repository's own judgement, looked up in the keys dir now (a key file moved out is seen at once); a keys dir
    // that cannot be read signs nothing either (as the dashboard's notice says), so that is a "no" too, not a failed whoami.
    const canSignTargets = await gw.tuf.signing("targets").then(
      (s) => s.held,
      () => false,
    );
    return c.json({ role: c.var.caller!.role, publicUrl: gw.publicUrl, canSignTargets } satisfies WhoAmI);
  })
  .post("/tokens", limit(16 * 1024), jsonBody(TokenRequest), async (c) => {
    const req = c.req.valid("json");
    const { store, ca, apiTokens } = c.var.gw;
    const role = req.role ?? "registration";
    if (role !== "registration" && (req.tags || req.hwid || req.maxUses !== undefined || req.allowDeviceTags !== undefined))
      throw new HTTPException(400, { message: "tags, hwid, maxUses and allowDeviceTags are for registration tokens" });
    const seconds = parseDuration(req.expiresIn ?? DEFAULT_LIFETIME[role]);
    const issued = newToken(ca.fingerprint);
    const now = new Date();
    const common = {
      id: crypto.randomUUID(),
      secretHash: issued.secretHash,
      name: req.name ?? null,
      createdAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + seconds * 1000).toISOString(),
    };
    if (role === "registration")
      await store.createRegistrationToken({
        ...common,
        tags: [...new Set(req.tags ?? [])], // a tag given twice is one tag (as devices tag stores it)
        hardwareId: req.hwid ?? null,
        maxUses: req.maxUses ?? 1,
        allowDeviceTags: req.allowDeviceTags ?? false,
      });
    else {
      await store.createApiToken({ ...common, role });
      apiTokens.invalidate(); // a cached "unknown" for this hash must not outlive its creation
    }
    const body: TokenCreated = { id: common.id, role, token: issued.token, expiresAt: common.expiresAt };
    return c.json(body, 201);
  })
  .get("/tokens", async (c) => {
    const { store } = c.var.gw;
    const [registration, api] = await Promise.all([store.listRegistrationTokens(), store.listApiTokens()]);
    const now = Date.now();
    // What both kinds show: never the secret's hash.
    const shown = (t: { id: string; name: string | null; createdAt: string; expiresAt: string; revokedAt: string | null }) => ({
      id: t.id,
      name: t.name,
      createdAt: t.createdAt,
      expiresAt: t.expiresAt,
      revokedAt: t.revokedAt,
      expired: Date.parse(t.expiresAt) <= now,
    });
    const tokens = registration.map(
      (t): RegistrationTokenInfo => ({ ...shown(t), tags: t.tags, hwid: t.hardwareId, uses: t.uses, maxUses: t.maxUses, allowDeviceTags: t.allowDeviceTags }),
    );
    const apiTokens = api.map((t): ApiTokenInfo => ({ ...shown(t), role: t.role }));
    return c.json({ tokens, apiTokens } satisfies TokenList);
  })
  .post("/tokens/:id/revoke", async (c) => {
    const id = c.req.param("id");
    const { store, apiTokens } = c.var.gw;
    const at = new Date().toISOString();
    if (await store.revokeRegistrationToken(id, at)) {
      const row = (await store.listRegistrationTokens()).find((t) => t.id === id);
      return c.json({ id, revokedAt: row?.revokedAt ?? at });
    }
    if (await store.revokeApiToken(id, at)) {
      apiTokens.invalidate();
      return c.json({ id, revokedAt: (await store.getApiToken(id))?.revokedAt ?? at });
    }
    return c.json({ error: `Token "${id}" not found` }, 404);
  });
