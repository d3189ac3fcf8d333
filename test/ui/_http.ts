/**
 * The dashboard as a browser without a browser: a cookie jar and requests over HTTPS to a real
 * gateway (redirects not followed, so each is seen), for tests of pages and form posts that need
 * no script.
 */
import type { GatewayHandle } from "../harness/gateway.ts";

export function dashboardClient(g: GatewayHandle) {
  const jar = new Map<string, string>();
  const request = async (path: string, init: RequestInit = {}) => {
    const cookie = [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
    const res = await fetch(`${g.url}${path}`, { ...init, redirect: "manual", headers: { ...(cookie ? { cookie } : {}), ...(init.headers as Record<string, string>) }, tls: { ca: g.caPem } } as RequestInit);
    for (const line of res.headers.getSetCookie()) {
      const pair = line.split(";")[0]!;
      const eq = pair.indexOf("=");
      jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
    return { status: res.status, location: res.headers.get("location"), html: await res.text() };
  };
  const signIn = (token: string) => request("/ui/login", { method: "POST", body: new URLSearchParams({ token }) });
  /** The page's CSRF token (its first `_csrf` field). */
  const csrfOf = (html: string) => /name="_csrf" value="([^"]+)"/.exec(html)![1]!;
  /** The cookies it holds, by name (a deleted one: ""), to be read or changed as a user could. */
  return { request, signIn, csrfOf, jar };
}

/** Text of an HTML fragment as the page escaped it. */
export const unescapeHtml = (s: string) =>
  s.replace(/&(lt|gt|quot|#39|amp);/g, (_, e: string) => ({ lt: "<", gt: ">", quot: '"', "#39": "'", amp: "&" })[e]!);
