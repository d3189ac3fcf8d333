/**
 * Who may call /admin (and push to the registry): the data dir's admin token,
 * or a publish/admin API token made with `gateway tokens create --role`.
 * Secrets are compared as sha256 hashes (constant time for the admin token).
 *
 * | role | may |
 * |---|---|
 * | publish | GET and POST /admin/targets; push and pull `<factory>/...` in the registry |
 * | admin | all of /admin (devices, tokens, targets, key rotation); the whole registry |
 * | viewer | every GET under /admin (read-only: the dashboard's viewer sign-in); pull `<factory>/...` |
 *
 * Rotating the root key needs the offline root key, which no token carries.
 *
 * @module
 */
import { createMiddleware } from "hono/factory";
import { HTTPException } from "hono/http-exception";
import type { ApiRole, TokenRole } from "../../lib/api/admin.ts";
import type { Caller, Gateway, GatewayEnv } from "../env.ts";
import { hashSecret, sameSecret, tokenSecret } from "../pki/tokens.ts";
import { apiTokenUsable } from "./api-tokens.ts";


/** What a publish token may call under /admin: read the targets and add new ones. Everything else needs admin. */
const PUBLISH_ROUTES: readonly (readonly [method: string, path: string])[] = [
  ["GET", "/admin/targets"],
  ["POST", "/admin/targets"],
  ["GET", "/admin/whoami"],
];

/** The token in a request: Bearer, or Basic with any user and the token as password (docker, skopeo). */
export function presentedAdminToken(authorization: string | undefined): string | undefined {
  if (!authorization) return undefined;
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  if (bearer) return bearer[1];
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(authorization);
  if (basic) {
    const text = Buffer.from(basic[1]!, "base64").toString("utf8");
    const colon = text.indexOf(":");
    return colon >= 0 ? text.slice(colon + 1) : undefined;
  }
  return undefined;
}

/**
 * The caller a token names, or why it names none, in words for its holder ("this token expired at
 * ..."), with the token's role when the gateway knows the token (revoked, expired, or a
 * registration token given where an API token is needed).
 */
export type TokenCheck = { caller: Caller } | { refused: string; role?: TokenRole };

/** The caller the admin token or an API token names, or why not (revoked, expired); undefined when no API token has this secret. */
async function checkApiToken(gw: Gateway, token: string, now: number): Promise<TokenCheck | undefined> {
  if (sameSecret(token, gw.adminToken)) return { caller: { role: "admin", tokenId: null } };
  const row = await gw.apiTokens.byHash(hashSecret(tokenSecret(token)));
  if (!row) return undefined;
  const { revokedAt, expiresAt, role } = row;
  if (apiTokenUsable(row, now)) return { caller: { role: row.role, tokenId: row.id } };
  return { refused: revokedAt !== null ? `this token was revoked at ${revokedAt}` : `this token expired at ${expiresAt}`, role };
}

/**
 * Why a registration token does not do where an API token is needed, naming the roles that would
 * and how such a token is made: /admin and /repo take any of publish, admin and viewer; the
 * dashboard's sign-in only admin and viewer.
 *
 * @example
 * ```ts
 * registrationTokenRefused(["admin", "viewer"]); // "it only registers devices; an API token is made with `gateway tokens create --role admin` (or viewer)"
 * ```
 */
export function registrationTokenRefused(roles: readonly [ApiRole, ...ApiRole[]]): string {
  const [first, ...rest] = roles;
  return `it only registers devices; an API token is made with \`gateway tokens create --role ${first}\`${rest.length ? ` (or ${rest.join(", or ")})` : ""}`;
}

/** The caller a token names, or why not: unknown, revoked (when), expired (when) or a registration token. */
export async function checkToken(gw: Gateway, token: string, now = Date.now()): Promise<TokenCheck> {
  const check = await checkApiToken(gw, token, now);
  if (check) return check;
  // `gateway tokens create` without --role makes a registration token: its holder is told so.
  if (await gw.store.getRegistrationTokenByHash(hashSecret(tokenSecret(token))))
    return { refused: registrationTokenRefused(["publish", "admin", "viewer"]), role: "registration" };
  return { refused: "unknown token" };
}

/**
 * The caller a token names, or undefined (unknown, revoked or expired). Asks no more than that:
 * registration and the registry call it on every request, a registration token is not looked up.
 */
export async function callerOf(gw: Gateway, token: string): Promise<Caller | undefined> {
  const r = await checkApiToken(gw, token, Date.now());
  return r && "caller" in r ? r.caller : undefined;
}

/**
 * The one wording of a refused token, for /admin and /repo alike: "Token refused: unknown token",
 * or with the role of a token the gateway knows ("Publish token refused: this token expired at ...").
 * Never "Admin token" for a token that is not one: publish, preload and export take any role.
 */
export const tokenRefused = (why: string, role?: TokenRole) =>
  `${role ? `${role[0]!.toUpperCase()}${role.slice(1)} token` : "Token"} refused: ${why}`;

/** The caller of a request (Bearer or Basic credentials), or undefined. */
export async function requestCaller(gw: Gateway, authorization: string | undefined): Promise<Caller | undefined> {
  const token = presentedAdminToken(authorization);
  return token === undefined ? undefined : callerOf(gw, token);
}

/**
 * Guards /admin: 401 without a token, 403 for an unknown one or a role that may not make this
 * call (publish tokens: {@link PUBLISH_ROUTES} only). Sets `caller`.
 */
export const requireApiToken = createMiddleware<GatewayEnv>(async (c, next) => {
  const auth = c.req.header("authorization");
  if (!auth) throw new HTTPException(401, { message: "Token required: send Authorization: Bearer <token> (an admin, publish or viewer token)" });
  const token = /^Bearer\s/i.test(auth) ? presentedAdminToken(auth) : undefined;
  const check: TokenCheck = token === undefined ? { refused: "send it as Authorization: Bearer <token>" } : await checkToken(c.var.gw, token);
  if (!("caller" in check)) throw new HTTPException(403, { message: tokenRefused(check.refused, check.role) });
  const caller = check.caller;
  c.set("caller", caller);
  c.set("admin", true);
  const readOnly = caller.role === "viewer" && (c.req.method === "GET" || c.req.method === "HEAD");
  if (caller.role !== "admin" && !readOnly && (caller.role !== "publish" || !PUBLISH_ROUTES.some(([m, p]) => m === c.req.method && p === c.req.path)))
    throw new HTTPException(403, {
      message: `A ${caller.role} token may not ${c.req.method} ${c.req.path}: it needs an admin token${PUBLISH_ROUTES.some(([m, p]) => m === c.req.method && p === c.req.path) ? " or a publish token" : ""}`,
    });
  await next();
});

/** For a route that needs one of these roles (after {@link requireApiToken}); 403 otherwise. */
export const requireRole = (...roles: ApiRole[]) =>
  createMiddleware<GatewayEnv>(async (c, next) => {
    const caller = c.var.caller;
    if (!caller || !roles.includes(caller.role))
      throw new HTTPException(403, { message: `This needs a token with role ${roles.join(" or ")}` });
    await next();
  });
