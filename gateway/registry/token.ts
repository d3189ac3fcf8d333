/**
 * Registry bearer tokens (the Docker token flow): `GET /token` takes Basic credentials (or an
 * identity the gateway already established, e.g. a device certificate) and returns a
 * short-lived token scoped to `repository:<name>:<actions>`. Tokens are HMAC-SHA256 signed
 * with a gateway secret, so verifying one is a local computation: no token table. The gateway
 * still asks, on every use, whether the holder named in `sub` was revoked since (see
 * `tokenRevoked` in registry.ts), so a token does not outlive its device or API token.
 *
 * Format: `<base64url(JSON claims)>.<base64url(HMAC)>`.
 *
 * Times: a token is stamped by the replica that issues it (`iat`, `exp`) and checked by whichever
 * replica the client reaches next, on that replica's clock. Replicas kept in step by NTP differ by
 * milliseconds, but one without it drifts, and a token living 300 s would be refused by a replica
 * whose clock is 5 minutes ahead of the issuer's. So `exp` is checked with
 * {@link TOKEN_CLOCK_LEEWAY_SECONDS} of slack: a couple of minutes of skew go unnoticed by clients,
 * while a stolen token gains at most that much life (and revocation is asked on every use anyway).
 * `iat` is not checked: a token from an issuer ahead lives longer here by the skew, no more. Beyond
 * the leeway, {@link tokenTimeRefusal} says the refusal was for the time alone, naming the token's
 * time and this clock's, so operators see the skew (each replica also compares its clock with the
 * database's: clock-skew.ts).
 *
 * @module
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { Hono, type Context } from "hono";
import { isRepositoryName } from "./_names.ts";

export type RegistryAction = "pull" | "push" | "delete";

/** One access a request needs: `repository` "" means "any authenticated caller" (ping). */
export interface RegistryAccess {
  repository: string;
  action: RegistryAction;
}

export interface TokenClaims {
  /** Who the token was issued to (for logs). */
  sub: string;
  aud: string;
  iat: number;
  exp: number;
  access: { type: "repository"; name: string; actions: RegistryAction[] }[];
}

const ACTIONS: readonly RegistryAction[] = ["pull", "push", "delete"];

function hmac(secret: string | Uint8Array, data: string): Buffer {
  return createHmac("sha256", secret).update(data).digest();
}

/** Signs claims into a token string. */
export function signRegistryToken(secret: string | Uint8Array, claims: TokenClaims): string {
  const payload = Buffer.from(JSON.stringify(claims)).toString("base64url");
  return `${payload}.${hmac(secret, payload).toString("base64url")}`;
}

/** How far the clock of the replica checking a token may differ from the issuer's without refusing it. */
export const TOKEN_CLOCK_LEEWAY_SECONDS = 120;

/**
 * Verifies a token's signature and its times (with {@link TOKEN_CLOCK_LEEWAY_SECONDS} for skew).
 *
 * @example
 * ```ts
 * const claims = verifyRegistryToken(secret, token); // undefined if forged or expired
 * ```
 */
export function verifyRegistryToken(secret: string | Uint8Array, token: string, nowSeconds = Date.now() / 1000): TokenClaims | undefined {
  const claims = genuineClaims(secret, token);
  return claims && timeRefusal(claims, nowSeconds) === undefined ? claims : undefined;
}

/**
 * Why a genuine token is refused for its time alone (expired beyond the leeway), naming its end
 * and this clock's time; `undefined` when it is not genuine or not refused for its time. For the
 * 401's message and the log.
 */
export function tokenTimeRefusal(secret: string | Uint8Array, token: string, nowSeconds = Date.now() / 1000): string | undefined {
  const claims = genuineClaims(secret, token);
  return claims && timeRefusal(claims, nowSeconds);
}

function timeRefusal(claims: TokenClaims, nowSeconds: number): string | undefined {
  if (claims.exp + TOKEN_CLOCK_LEEWAY_SECONDS > nowSeconds) return undefined;
  const at = (s: number) => new Date(s * 1000).toISOString();
  return `the registry token expired at ${at(claims.exp)} by this gateway's clock (${at(nowSeconds)}), beyond the ${TOKEN_CLOCK_LEEWAY_SECONDS} s allowed for clock skew between replicas: ask for a new one; if it was issued just now, the issuing replica's clock is behind this one's (synchronise the replicas' clocks, NTP)`;
}

/** The claims of a token signed with `secret` and well formed, whatever its times. */
function genuineClaims(secret: string | Uint8Array, token: string): TokenClaims | undefined {
  const dot = token.indexOf(".");
  if (dot <= 0 || token.indexOf(".", dot + 1) !== -1) return undefined;
  const payload = token.slice(0, dot);
  const sig = Buffer.from(token.slice(dot + 1), "base64url");
  const want = hmac(secret, payload);
  if (sig.length !== want.length || !timingSafeEqual(sig, want)) return undefined;
  let claims: TokenClaims;
  try {
    claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
  } catch {
    return undefined;
  }
  if (typeof claims?.exp !== "number" || !Array.isArray(claims.access)) return undefined;
  return claims;
}

/** True if the claims grant `access` (any valid token grants the ping, repository ""). */
export function tokenAllows(claims: TokenClaims, access: RegistryAccess): boolean {
  if (access.repository === "") return true;
  return claims.access.some((a) => a.type === "repository" && a.name === access.repository && a.actions.includes(access.action));
}

/** The token in an `Authorization: Bearer <token>` header, if any. */
export function bearerToken(authorization: string | undefined | null): string | undefined {
  const m = authorization ? /^Bearer\s+(\S+)\s*$/i.exec(authorization) : null;
  return m?.[1];
}

/** Parses `repository:<name>:<a,b>` scopes; ignores other resource types and unknown actions. */
export function parseScopes(scopes: string[]): { name: string; actions: RegistryAction[] }[] {
  const out: { name: string; actions: RegistryAction[] }[] = [];
  for (const scope of scopes.flatMap((s) => s.split(" "))) {
    const first = scope.indexOf(":");
    const last = scope.lastIndexOf(":");
    if (first < 0 || last === first || scope.slice(0, first) !== "repository") continue;
    const name = scope.slice(first + 1, last);
    if (!isRepositoryName(name)) continue;
    const actions = scope
      .slice(last + 1)
      .split(",")
      .flatMap((a): RegistryAction[] => (a === "*" ? [...ACTIONS] : ACTIONS.includes(a as RegistryAction) ? [a as RegistryAction] : []));
    out.push({ name, actions: [...new Set(actions)] });
  }
  return out;
}

export interface TokenEndpointOptions<I> {
  /** HMAC key shared with {@link createRegistry}'s `tokenSecret`. */
  secret: string | Uint8Array;
  /** Checks Basic credentials; returns the caller's identity or `undefined`. */
  checkCredentials(user: string, password: string): I | undefined | Promise<I | undefined>;
  /** May this identity do `action` on `repository`? Denied actions are left out of the token. */
  allowed(identity: I, repository: string, action: RegistryAction): boolean | Promise<boolean>;
  /** An identity established by the gateway before Basic (e.g. a device certificate). */
  identify?(c: Context): I | undefined | Promise<I | undefined>;
  /** A name for the identity in the token's `sub`. */
  subject?(identity: I): string;
  /** `service` in challenges and tokens; default "gateway". */
  service?: string;
  /** Token lifetime; default 300 s. */
  ttlSeconds?: number;
  /**
   * An external registry that uses this endpoint as its token realm: a request whose `service`
   * is `external.service` gets a JSON Web Token signed by `external.sign` (jwt.ts) instead of the
   * embedded registry's HMAC token, with the same identity checks and the same granted access.
   */
  external?: { service: string; sign(claims: TokenClaims): Promise<string> };
}

/** Parses `Authorization: Basic ...`, or `undefined`. */
export function basicCredentials(authorization: string | undefined | null): { user: string; password: string } | undefined {
  const m = authorization ? /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(authorization) : null;
  if (!m?.[1]) return undefined;
  const text = Buffer.from(m[1], "base64").toString("utf8");
  const colon = text.indexOf(":");
  if (colon < 0) return undefined;
  return { user: text.slice(0, colon), password: text.slice(colon + 1) };
}

/**
 * The `GET /token` sub-app. Answers 401 (with a Basic challenge) when no identity can be
 * established; otherwise issues a token granting the requested actions the identity is allowed
 * (possibly none, as Docker's token servers do, so the registry then answers 403). A `service`
 * that is neither `service` nor the external registry's is answered 400, naming both.
 *
 * @example
 * ```ts
 * app.route("/", createTokenEndpoint({ secret, checkCredentials, allowed }));
 * ```
 */
export function createTokenEndpoint<I>(opts: TokenEndpointOptions<I>): Hono {
  const service = opts.service ?? "gateway";
  const ttl = opts.ttlSeconds ?? 300;
  return new Hono().get("/token", async (c) => {
    let identity = await opts.identify?.(c);
    if (identity === undefined) {
      const creds = basicCredentials(c.req.header("authorization"));
      if (creds) identity = await opts.checkCredentials(creds.user, creds.password);
    }
    if (identity === undefined) {
      return c.json(
        { errors: [{ code: "UNAUTHORIZED", message: "Token refused: missing or invalid credentials" }] },
        401,
        { "WWW-Authenticate": `Basic realm="${service}"` },
      );
    }
    // A registry naming a service this gateway does not sign for would only get a token it refuses
    // ("401" with no reason at the client): say which names it does sign for, and which flag sets them.
    const asked = c.req.query("service");
    if (asked && asked !== service && asked !== opts.external?.service) {
      const message = opts.external
        ? `Token refused: this gateway issues tokens for service "${service}" (its own registry) and "${opts.external.service}" (gateway serve --external-registry-service), not "${asked}": the registry's auth.token.service must equal --external-registry-service`
        : `Token refused: this gateway issues tokens for service "${service}" (its own registry) only, not "${asked}": for an external registry, start gateway serve with --external-registry-service ${asked} (the registry's auth.token.service)`;
      return c.json({ errors: [{ code: "DENIED", message }] }, 400);
    }
    const access: TokenClaims["access"] = [];
    for (const { name, actions } of parseScopes(c.req.queries("scope") ?? [])) {
      const granted: RegistryAction[] = [];
      for (const action of actions) if (await opts.allowed(identity, name, action)) granted.push(action);
      access.push({ type: "repository", name, actions: granted });
    }
    const iat = Math.floor(Date.now() / 1000);
    const sub = opts.subject?.(identity) ?? (typeof identity === "string" ? identity : "client");
    const external = opts.external && asked === opts.external.service ? opts.external : undefined;
    const claims = { sub, aud: external?.service ?? service, iat, exp: iat + ttl, access };
    const token = external ? await external.sign(claims) : signRegistryToken(opts.secret, claims);
    return c.json({ token, access_token: token, expires_in: ttl, issued_at: new Date(iat * 1000).toISOString() });
  });
}
