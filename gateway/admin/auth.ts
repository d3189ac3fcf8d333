/** The admin token guards /admin: `Authorization: Bearer <admin token>`, compared in constant time. */
import { createMiddleware } from "hono/factory";
import { HTTPException } from "hono/http-exception";
import type { GatewayEnv } from "../env.ts";
import { sameSecret } from "../pki/tokens.ts";

/** The admin token in a request: Bearer, or Basic with any user and the token as password (docker, skopeo). */
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

export const isAdmin = (authorization: string | undefined, adminToken: string) => {
  const t = presentedAdminToken(authorization);
  return t !== undefined && sameSecret(t, adminToken);
};

export const requireAdmin = createMiddleware<GatewayEnv>(async (c, next) => {
  const auth = c.req.header("authorization");
  if (!auth) throw new HTTPException(401, { message: "Admin token required: send Authorization: Bearer <admin token>" });
  if (!/^Bearer\s/i.test(auth) || !isAdmin(auth, c.var.gw.adminToken))
    throw new HTTPException(403, { message: "Admin token refused" });
  await next();
});
