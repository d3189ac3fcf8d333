import { describe, expect, setSystemTime, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Hono } from "hono";
import { createRegistry } from "./registry.ts";
import { createTokenEndpoint, parseScopes, signRegistryToken, TOKEN_CLOCK_LEEWAY_SECONDS, tokenAllows, verifyRegistryToken, type TokenClaims } from "./token.ts";

const secret = "s3cret";
const claims = (exp: number): TokenClaims => ({ sub: "ci", aud: "gateway", iat: 0, exp, access: [{ type: "repository", name: "main/app", actions: ["pull"] }] });

describe("registry tokens", () => {
  test("verify what was signed with the same secret, and nothing else", () => {
    const t = signRegistryToken(secret, claims(Date.now() / 1000 + 60));
    expect(verifyRegistryToken(secret, t)?.sub).toBe("ci");
    expect(verifyRegistryToken("other", t)).toBeUndefined();
    expect(verifyRegistryToken(secret, `${t}x`)).toBeUndefined();
    expect(verifyRegistryToken(secret, "abc.def")).toBeUndefined();
    expect(verifyRegistryToken(secret, "not-a-token")).toBeUndefined();
  });
  test("expire (past the leeway for clock skew)", () => {
    const t = signRegistryToken(secret, claims(Date.now() / 1000 - TOKEN_CLOCK_LEEWAY_SECONDS - 1));
    expect(verifyRegistryToken(secret, t)).toBeUndefined();
  });
  test("grant only the listed repository and actions", () => {
    const c = claims(1e12);
    expect(tokenAllows(c, { repository: "main/app", action: "pull" })).toBe(true);
    expect(tokenAllows(c, { repository: "main/app", action: "push" })).toBe(false);
    expect(tokenAllows(c, { repository: "main/other", action: "pull" })).toBe(false);
    expect(tokenAllows(c, { repository: "", action: "pull" })).toBe(true);
  });
});

describe("parseScopes", () => {
  test("reads repository scopes and drops unknown actions and types", () => {
    expect(parseScopes(["repository:main/app:pull,push", "registry:catalog:*", "repository:a:*", "repository:b:fly"])).toEqual([
      { name: "main/app", actions: ["pull", "push"] },
      { name: "a", actions: ["pull", "push", "delete"] },
      { name: "b", actions: [] },
    ]);
  });
  test("handles a host:port-free name with a space-separated list", () => {
    expect(parseScopes(["repository:x:pull repository:y:push"]).map((s) => s.name)).toEqual(["x", "y"]);
  });
});

describe("GET /token", () => {
  const app = new Hono().route(
    "/",
    createTokenEndpoint<string>({
      secret,
      checkCredentials: (u, p) => (p === "pw" ? u : undefined),
      allowed: (id, repo, action) => id === "admin" || (repo === "main/app" && action === "pull"),
    }),
  );
  const basic = (u: string, p: string) => ({ Authorization: `Basic ${btoa(`${u}:${p}`)}` });

  test("answers 401 with a Basic challenge without valid credentials", async () => {
    const res = await app.request("/token?scope=repository:main/app:pull");
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toBe('Basic realm="gateway"');
    expect((await app.request("/token", { headers: basic("x", "bad") })).status).toBe(401);
  });
  test("issues a token with only the allowed actions", async () => {
    const res = await app.request("/token?service=gateway&scope=repository:main/app:pull,push", { headers: basic("dev", "pw") });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { token: string; access_token: string; expires_in: number };
    expect(body.access_token).toBe(body.token);
    expect(verifyRegistryToken(secret, body.token)?.access).toEqual([{ type: "repository", name: "main/app", actions: ["pull"] }]);
  });
});

describe("tokens across replicas whose clocks differ", () => {
  const issuer = new Hono().route("/", createTokenEndpoint<string>({ secret, checkCredentials: (u) => u, allowed: () => true }));
  /** A token from GET /token on a replica whose clock is `skewS` seconds off this one's. */
  async function issuedAt(skewS: number): Promise<string> {
    setSystemTime(new Date(Date.now() + skewS * 1000));
    try {
      const res = await issuer.request("/token?scope=repository:main/app:pull", { headers: { Authorization: `Basic ${btoa("ci:pw")}` } });
      return ((await res.json()) as { token: string }).token;
    } finally {
      setSystemTime();
    }
  }

  test("a token from a replica 6 minutes behind (more than its 300 s life) is accepted", async () => {
    expect(verifyRegistryToken(secret, await issuedAt(-360))?.sub).toBe("ci");
  });

  test("one from a replica an hour behind is answered 401 saying it was refused for its time, logged once", async () => {
    const root = await mkdtemp(join(tmpdir(), "registry-token-"));
    try {
      const logged: string[] = [];
      const registry = createRegistry({ root, tokenSecret: secret, tokenRealm: "https://gw/token", authorize: () => false, log: (l) => logged.push(l) });
      const token = await issuedAt(-3600);
      for (let i = 0; i < 2; i++) {
        const res = await registry.request("/v2/main/app/manifests/latest", { headers: { Authorization: `Bearer ${token}` } });
        expect(res.status).toBe(401);
        const message = ((await res.json()) as { errors: { message: string }[] }).errors[0]!.message;
        expect(message).toContain("the registry token expired at");
        expect(message).toContain("clock is behind");
      }
      expect(logged.length).toBe(1);
      expect(logged[0]).toContain("synchronise the replicas' clocks");
      // A forged token is refused without talk of clocks.
      const res = await registry.request("/v2/main/app/manifests/latest", { headers: { Authorization: `Bearer ${token}x` } });
      expect(((await res.json()) as { errors: { message: string }[] }).errors[0]!.message).not.toContain("clock");
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
