/**
 * Who may do what in the embedded registry, by the same roles as /admin
 * (gateway/admin/auth.ts): the admin token and admin tokens everything;
 * publish tokens push and pull the factory's repositories; devices pull
 * them. A registry bearer token (from `GET /token`) names its holder in `sub`
 * (`admin`, `token:<id>`, `device:<uuid>`) and dies when that holder is revoked.
 *
 * @module
 */
import type { Context } from "hono";
import type { Gateway, GatewayEnv } from "../env.ts";
import { checkDevice, deviceInGoodStanding } from "../devices/auth.ts";
import { REGISTRY_REFUSAL } from "../registry/registry.ts";
import type { RegistryAction, TokenClaims } from "../registry/token.ts";
import { apiTokenUsable } from "./api-tokens.ts";
import type { Caller } from "../env.ts";
import { callerOf, requestCaller } from "./auth.ts";

export type RegistryIdentity = Caller | { device: string };

const subject = (who: RegistryIdentity) => ("device" in who ? `device:${who.device}` : who.tokenId ? `token:${who.tokenId}` : "admin");

export function registryAccess(gw: Gateway) {
  const ownRepo = (repository: string) => repository === "" || repository.startsWith(`${gw.factory}/`);

  /** The caller of a registry request: an API token (Bearer or Basic), else a device certificate. */
  async function identify(c: Context<GatewayEnv>): Promise<RegistryIdentity | undefined> {
    const caller = await requestCaller(gw, c.req.header("authorization"));
    if (caller) {
      c.set("admin", true);
      c.set("caller", caller);
      return caller;
    }
    const peer = c.env?.peer;
    if (!peer) return undefined;
    const d = await deviceInGoodStanding(gw.devices, peer);
    if (!d) {
      // A factory certificate of a revoked, unknown or superseded device: the registry answers
      // 403 with why (as device endpoints do), not a 401 challenge no credential of its would meet.
      const check = await checkDevice(gw.devices, peer);
      if ("refused" in check) (c as Context).set(REGISTRY_REFUSAL, check.refused);
      return undefined;
    }
    c.set("device", d);
    return { device: d.uuid };
  }

  function allowed(who: RegistryIdentity, repository: string, action: RegistryAction): boolean {
    if ("device" in who) return action === "pull" && ownRepo(repository);
    if (who.role === "admin") return true;
    if (who.role === "viewer") return action === "pull" && ownRepo(repository);
    return (action === "pull" || action === "push") && ownRepo(repository);
  }

  /** True when the holder a token was issued to is gone: a revoked device or API token. */
  async function tokenRevoked(claims: TokenClaims): Promise<boolean> {
    if (claims.sub.startsWith("device:")) {
      const d = await gw.devices.get(claims.sub.slice("device:".length));
      return !d || d.revokedAt !== null;
    }
    if (claims.sub.startsWith("token:")) return !apiTokenUsable(await gw.apiTokens.byId(claims.sub.slice("token:".length)));
    return claims.sub !== "admin";
  }

  return {
    identify,
    allowed,
    tokenRevoked,
    subject,
    /** Basic credentials for `GET /token`: any user, an API token as the password. */
    checkCredentials: (_user: string, password: string) => callerOf(gw, password),
  };
}
