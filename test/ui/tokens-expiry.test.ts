/**
 * Token expiry as the dashboard shows it, over HTTPS against a real gateway (the pages a
 * browser would get, read as HTML): the Tokens page says when an unexpired token expires ("in
 * 30 d", not "0 s ago") and that an expired one has; sign-in with an expired token says when it
 * expired; a session whose token expires or is revoked, or that ran its 8 hours, lands on sign-in
 * with a line saying so.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { join } from "node:path";
import type { TokenCreated, TokenRequest } from "../../lib/api/admin.ts";
import type { Gateway } from "../../gateway/env.ts";
import { SESSION_COOKIE, SESSION_SECONDS, sealSession } from "../../gateway/ui/session.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";

let g: GatewayHandle;

beforeAll(async () => {
  g = await startGateway();
}, 120_000);

afterAll(async () => {
  await g?.stop();
}, 120_000);

async function createToken(req: TokenRequest): Promise<TokenCreated> {
  const res = await g.adminFetch("/admin/tokens", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(req) });
  expect(res.status).toBe(201);
  return (await res.json()) as TokenCreated;
}

/** The sign-in page's alert line, or undefined. */
const alertOf = (html: string) => /<p class="msg error" role="alert">(.*?)<\/p>/s.exec(html)?.[1];

const untilExpired = (t: TokenCreated) => Bun.sleep(Math.max(0, Date.parse(t.expiresAt) - Date.now() + 200));

/** A browser's cookie jar and its requests to the dashboard (redirects not followed, so each one is seen). */
function browser() {
  const jar = new Map<string, string>();
  const request = async (path: string, init: RequestInit = {}) => {
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
    const res = await fetch(`${g.url}${path}`, { ...init, redirect: "manual", headers: { ...(cookie ? { cookie } : {}), ...(init.headers as Record<string, string>) }, tls: { ca: g.caPem } } as RequestInit);
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(";");
      const eq = pair!.indexOf("=");
      const name = pair!.slice(0, eq).trim();
      const gone = attrs.some((a) => /^\s*max-age=0\s*$/i.test(a) || (/^\s*expires=/i.test(a) && Date.parse(a.split("=")[1]!) <= Date.now()));
      if (gone) jar.delete(name);
      else jar.set(name, pair!.slice(eq + 1).trim());
    }
    return { status: res.status, location: res.headers.get("location"), html: await res.text() };
  };
  const signIn = (token: string) => request("/ui/login", { method: "POST", body: new URLSearchParams({ token }) });
  return { request, signIn };
}

describe("dashboard token expiry", () => {
  test("the Tokens page says when a token expires, and that an expired one has", async () => {
    const reg = await createToken({ name: "month", expiresIn: "30d" });
    const year = await createToken({ role: "viewer", name: "year", expiresIn: "365d" });
    const gone = await createToken({ role: "publish", name: "gone", expiresIn: "1s" });
    await untilExpired(gone);
    const b = browser();
    expect((await b.signIn(g.adminToken)).status).toBe(303);
    const page = await b.request("/ui/tokens");
    expect(page.status).toBe(200);
    const row = (id: string) => new RegExp(`<tr data-token="${id}">.*?</tr>`, "s").exec(page.html)?.[0] ?? "";
    expect(row(reg.id)).toContain(`<time datetime="${reg.expiresAt}" title="${reg.expiresAt}">in 30 d</time>`);
    expect(row(year.id)).toContain(`<time datetime="${year.expiresAt}" title="${year.expiresAt}">in 365 d</time>`);
    expect(row(gone.id)).toMatch(new RegExp(`expired <time datetime="${gone.expiresAt}" title="${gone.expiresAt}">\\d+ s ago</time>`));
    expect(page.html).not.toMatch(/datetime="[^"]*">0 s ago/);
  }, 60_000);

  test("sign-in with an expired admin token says when it expired", async () => {
    const t = await createToken({ role: "admin", name: "expired admin", expiresIn: "1s" });
    await untilExpired(t);
    const r = await browser().signIn(t.token);
    expect(r.status).toBe(401);
    expect(alertOf(r.html)).toBe(`That token cannot sign in: this token expired at ${t.expiresAt}; it needs an unrevoked, unexpired admin or viewer token.`);
  }, 60_000);

  test("a session whose token expires lands on sign-in saying the token expired", async () => {
    const t = await createToken({ role: "admin", name: "short admin", expiresIn: "2s" });
    const b = browser();
    expect((await b.signIn(t.token)).status).toBe(303);
    expect((await b.request("/ui/tokens")).status).toBe(200);
    await untilExpired(t);
    const ended = await b.request("/ui/tokens");
    expect({ status: ended.status, location: ended.location }).toEqual({ status: 303, location: "/ui/login" });
    const login = await b.request("/ui/login");
    expect(alertOf(login.html)).toBe(`Your session ended: this token expired at ${t.expiresAt}. Sign in with a current token.`);
    // Said once: the next visit to the sign-in page is a plain one.
    expect(alertOf((await b.request("/ui/login")).html)).toBeUndefined();
    // And the session is over: a page sends it to sign-in again.
    expect((await b.request("/ui/tokens")).location).toBe("/ui/login");
  }, 60_000);

  test("a session whose token is revoked lands on sign-in saying it was revoked", async () => {
    const t = await createToken({ role: "viewer", name: "revoked viewer" });
    const b = browser();
    expect((await b.signIn(t.token)).status).toBe(303);
    const revoked = await g.adminFetch(`/admin/tokens/${t.id}/revoke`, { method: "POST" });
    expect(revoked.status).toBe(200);
    const { revokedAt } = (await revoked.json()) as { revokedAt: string };
    expect((await b.request("/ui/")).location).toBe("/ui/login");
    expect(alertOf((await b.request("/ui/login")).html)).toBe(`Your session ended: this token was revoked at ${revokedAt}. Sign in with a current token.`);
  }, 60_000);

  test("a session that ran its 8 hours lands on sign-in saying so, and a tampered cookie lands there without a word", async () => {
    // The cookie a browser kept from a sign-in 9 hours ago, sealed with this gateway's session secret
    // (made at the first sign-in).
    expect((await browser().signIn(g.adminToken)).status).toBe(303);
    const db = new Database(join(g.dataDir, "gateway.db"), { readonly: true });
    const secret = (db.query("SELECT value FROM gateway_meta WHERE key = 'ui-session-secret'").get() as { value: string } | null)?.value;
    db.close();
    expect(secret).toBeString();
    const sameSecret = { store: { claimMeta: async () => secret } } as unknown as Gateway;
    const { value } = await sealSession(sameSecret, g.adminToken, "admin", Date.now() - (SESSION_SECONDS + 3600) * 1000);

    const b = browser();
    const old = await b.request("/ui/devices", { headers: { cookie: `${SESSION_COOKIE}=${value}` } });
    expect(old.location).toBe("/ui/login");
    expect(alertOf((await b.request("/ui/login")).html)).toBe("Your session ended: a sign-in lasts 8 hours. Sign in again.");
    expect(alertOf((await b.request("/ui/login")).html)).toBeUndefined();
    // A form posted from a page left open past the 8 hours says so too.
    const post = await b.request("/ui/logout", { method: "POST", headers: { cookie: `${SESSION_COOKIE}=${value}` } });
    expect(post.status).toBe(401);
    expect(post.html).toBe("Your session ended (a sign-in lasts 8 hours): sign in again");

    // A cookie that was tampered with is no session that ran out: no notice.
    const tampered = `${value.slice(0, -2)}AA`;
    const t = browser();
    expect((await t.request("/ui/devices", { headers: { cookie: `${SESSION_COOKIE}=${tampered}` } })).location).toBe("/ui/login");
    expect(alertOf((await t.request("/ui/login")).html)).toBeUndefined();
  }, 60_000);
});
