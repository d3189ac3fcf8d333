/* @jsxImportSource hono/jsx */
/**
 * The page frame every dashboard page shares: navigation, one inline style
 * sheet (light and dark by `prefers-color-scheme`, one column at phone width)
 * and the small client script (live refresh, copy button, confirmations).
 * Nothing is loaded from anywhere else: the binary serves it all.
 *
 * @module
 */
import { createHash } from "node:crypto";
import type { Context } from "hono";
import type { Child } from "hono/jsx";
import { raw } from "hono/html";
import { AttentionBanner, type Attention } from "./attention.tsx";

const CSS = `
:root{--bg:#fff;--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--card:#f6f8fa;--accent:#0a58ca;
--ok:#1a7f37;--warn:#9a6700;--bad:#cf222e;--info:#0969da;--off:#6e7781;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9da7b3;--line:#30363d;--card:#161b22;
--accent:#58a6ff;--ok:#3fb950;--warn:#d29922;--bad:#f85149;--info:#58a6ff;--off:#8b949e}}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,sans-serif;background:var(--bg);color:var(--fg)}
a{color:var(--accent)}a:focus-visible,button:focus-visible,input:focus-visible,select:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
header{display:flex;flex-wrap:wrap;gap:.25rem 1rem;align-items:center;padding:.6rem 1rem;border-bottom:1px solid var(--line);background:var(--card)}
header .brand{font-weight:700;margin-right:auto}header nav{display:flex;flex-wrap:wrap;gap:.25rem .9rem}
header nav a{text-decoration:none;padding:.2rem 0}header nav a[aria-current=page]{font-weight:700;border-bottom:2px solid var(--accent)}
main{padding:1rem;max-width:1200px;margin:0 auto}h1{font-size:1.4rem;margin:.2rem 0 1rem}h2{font-size:1.1rem;margin:1.4rem 0 .5rem}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:1rem}
.card{border:1px solid var(--line);border-radius:8px;padding:.8rem 1rem;background:var(--card)}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th a{color:inherit}td code,dd code{word-break:break-all}
.badge{display:inline-block;padding:0 .5rem;border-radius:1rem;font-size:.85em;border:1px solid currentColor;white-space:nowrap}
.s-up-to-date{color:var(--ok)}.s-updating{color:var(--info)}.s-failed,.s-rolled-back,.s-unhealthy{color:var(--bad)}
.s-offline,.s-never-seen,.s-revoked,.s-registered,.s-cancelled{color:var(--off)}.s-healthy{color:var(--ok)}
form.filters{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end;margin-bottom:1rem}
label{display:flex;flex-direction:column;font-size:.85rem;color:var(--muted);gap:.15rem}
input,select,button,textarea{font:inherit;color:var(--fg);background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:.35rem .5rem}
button{cursor:pointer;background:var(--card)}button.danger{color:var(--bad);border-color:var(--bad)}button.primary{background:var(--accent);color:#fff;border-color:var(--accent)}
.muted{color:var(--muted)}.error{color:var(--bad)}.msg{padding:.5rem .8rem;border-radius:6px;border:1px solid var(--line);margin-bottom:1rem}
.msg.error,.msg.bad{border-color:var(--bad)}.msg.warn{border-color:var(--warn)}.pager{display:flex;gap:1rem;align-items:center;margin-top:.8rem}
ol.timeline{list-style:none;padding:0;margin:0;border-left:2px solid var(--line)}ol.timeline li{margin:0 0 .6rem .9rem;position:relative}
ol.timeline li::before{content:"";position:absolute;left:-1.33rem;top:.45rem;width:.6rem;height:.6rem;border-radius:50%;background:var(--line)}
ol.timeline li.ok::before{background:var(--ok)}ol.timeline li.bad::before{background:var(--bad)}
pre{white-space:pre-wrap;word-break:break-word;background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.5rem;margin:.3rem 0;max-height:20rem;overflow:auto}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0}dl.kv dt{color:var(--muted)}dl.kv dd{margin:0}dl.kv.groups{margin-bottom:1rem}
svg{max-width:680px}svg text{fill:var(--fg);font-size:11px}svg .bar{fill:var(--accent)}svg .line{stroke:var(--accent);fill:none;stroke-width:2}svg .axis{stroke:var(--line)}
.skip{position:absolute;left:-9999px}.skip:focus{left:1rem;top:.5rem;background:var(--bg);padding:.3rem .6rem;z-index:1}
.s-running{color:var(--info)}.s-paused{color:var(--warn)}.s-halted{color:var(--bad)}.s-completed{color:var(--ok)}
ol.waves{list-style:none;padding:0;margin:0}ol.waves li{margin-bottom:.7rem}
.waves .bar{display:flex;height:.8rem;border-radius:4px;overflow:hidden;background:var(--line);margin:.2rem 0}
.waves .bar .ok{background:var(--ok)}.waves .bar .bad{background:var(--bad)}.waves .bar .pending{background:var(--off);opacity:.5}
.actions{display:flex;flex-wrap:wrap;gap:.5rem}
.banner{margin:0;padding:.5rem 1rem;border-bottom:2px solid var(--warn);background:var(--card)}.banner.bad{border-bottom-color:var(--bad)}
.secret{font-family:ui-monospace,monospace;word-break:break-all}
@media (max-width:640px){main{padding:.6rem}th.opt,td.opt{display:none}form.filters>*{flex:1 1 45%}}
`;

/** The header the client script's refresh sends: a page's answer to it needs only its live regions. */
const LIVE_HEADER = "x-ui-live";

/**
 * Whether the request is the client script's refresh, which takes only the page's `[data-live]`
 * regions from the answer: what stands outside them need not be looked up.
 */
export const liveRefresh = (c: Context) => c.req.header(LIVE_HEADER) === "1";

/**
 * Client script: refreshes each `[data-live]` region every few seconds from the page's own address
 * (its body's `data-href`), while the tab is visible and no field in it has focus (one request per
 * page per interval), and takes the tab to the sign-in page when the session has ended; copy
 * buttons; confirmation of dangerous actions. Not from location.href: a page answering a refused
 * form stands at the form's POST address, which a GET finds no page at.
 */
const SCRIPT = `
(() => {
  const every = 5000;
  const href = document.body.dataset.href;
  async function refresh() {
    if (document.visibilityState !== "visible") return;
    const regions = [...document.querySelectorAll("[data-live]")].filter((r) => !r.contains(document.activeElement));
    if (!regions.length) return;
    try {
      const res = await fetch(href, { headers: { "${LIVE_HEADER}": "1" }, credentials: "same-origin", redirect: "manual" });
      // A page's GET redirects only when the session has ended: the tab goes to the sign-in page,
      // which says why once (followed here, that reason would be used up unseen).
      if (res.type === "opaqueredirect") { clearInterval(timer); location.assign("/ui/login"); return; }
      if (!res.ok) return;
      const doc = new DOMParser().parseFromString(await res.text(), "text/html");
      for (const r of regions) { const n = doc.getElementById(r.id); if (n) r.replaceWith(n); }
      document.body.dataset.refreshed = String(Date.now());
    } catch {}
  }
  const timer = href && document.querySelector("[data-live]") ? setInterval(refresh, every) : undefined;
  document.addEventListener("click", (e) => {
    const b = e.target.closest("[data-copy]");
    if (b) { navigator.clipboard?.writeText(document.getElementById(b.dataset.copy).textContent); b.textContent = "Copied"; }
  });
  document.addEventListener("submit", (e) => {
    const m = e.target.dataset.confirm;
    if (m && !confirm(m)) e.preventDefault();
  });
})();
`;

/** A CSP source for exactly this inline text. */
const hashOf = (text: string) => `'sha256-${createHash("sha256").update(text).digest("base64")}'`;

/**
 * Content-Security-Policy of every page: the one style sheet and the one script above, named by
 * their hashes (no other `<style>` or `<script>`, no event-handler attribute, runs), style
 * attributes (the wave bars' widths), requests to the gateway itself.
 */
export const CSP =
  `default-src 'none'; style-src ${hashOf(CSS)}; style-src-attr 'unsafe-inline'; script-src ${hashOf(SCRIPT)}; connect-src 'self'; ` +
  "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const NAV = [
  ["/ui/", "Overview"],
  ["/ui/devices", "Devices"],
  ["/ui/targets", "Targets"],
  ["/ui/rollouts", "Rollouts"],
  ["/ui/groups", "Groups"],
  ["/ui/tokens", "Tokens"],
] as const;

export interface PageProps {
  title: string;
  /** Current path, to mark the navigation entry. */
  path: string;
  /** Signed-in role and the CSRF token for the sign-out form; absent on the sign-in page. */
  user?: { role: string; csrf: string };
  /** What needs a person (./attention.tsx): a banner on every page but the overview, which lists it. */
  attention?: Attention[];
  /** The page's own address, a GET, which its live regions refresh from; none: they do not refresh. */
  href?: string;
  children?: Child;
}

export function Page({ title, path, user, attention = [], href, children }: PageProps) {
  const current = (href: string) => (href === "/ui/" ? path === "/ui/" || path === "/ui" : path.startsWith(href));
  // The doctype first: without it a browser lays the page out in quirks mode (box sizes, tables and
  // line heights as 1990s pages had them), not as the CSS here means.
  return (
    <>
      {raw("<!DOCTYPE html>")}
      <html lang="en">
        <head>
          <meta charset="utf-8" />
          <meta name="viewport" content="width=device-width, initial-scale=1" />
          <meta name="color-scheme" content="light dark" />
          <title>{`${title} · OTA gateway`}</title>
          {/* An empty icon of its own: a browser asks for /favicon.ico otherwise, a 404 on every page. */}
          <link rel="icon" href="data:," />
          <style>{raw(CSS)}</style>
        </head>
        <body data-href={href}>
          <a class="skip" href="#main">
            Skip to content
          </a>
          <header>
            <span class="brand">OTA gateway</span>
            {user && (
              <nav aria-label="Main">
                {NAV.map(([href, label]) => (
                  <a href={href} aria-current={current(href) ? "page" : undefined}>
                    {label}
                  </a>
                ))}
              </nav>
            )}
            {user && (
              <form method="post" action="/ui/logout">
                <input type="hidden" name="_csrf" value={user.csrf} />
                <span class="muted">{user.role} </span>
                <button type="submit">Sign out</button>
              </form>
            )}
          </header>
          {!current("/ui/") && <AttentionBanner items={attention} />}
          <main id="main" tabindex={-1}>{children}</main>
          <script>{raw(SCRIPT)}</script>
        </body>
      </html>
    </>
  );
}

/** A count and its noun, the plural for any count but one: "1 device", "1,024 devices". */
export const counted = (n: number, noun: string) => `${n.toLocaleString("en")} ${n === 1 ? noun : `${noun}s`}`;

/** A status as a coloured badge (text too, never colour alone). */
export const Badge = ({ status }: { status: string }) => <span class={`badge s-${status}`}>{status}</span>;

/** What the gateway refused and why: above the form it came from, or the whole page when there is none. */
export const Refused = ({ message }: { message: string }) => (
  <p class="msg error" role="alert">
    {`The gateway refused this: ${message}`}
  </p>
);

/** The hidden CSRF field every form that POSTs carries. */
export const Csrf = ({ token }: { token: string }) => <input type="hidden" name="_csrf" value={token} />;

/** "3 min ago" for a past ISO time, "in 365 d" for a future one (an expiry), with the exact time in a tooltip. */
export function Ago({ at, now = Date.now() }: { at: string | null | undefined; now?: number }) {
  if (!at) return <span class="muted">never</span>;
  const ms = Date.parse(at) - now;
  const s = Math.round(Math.abs(ms) / 1000);
  const span = s < 60 ? `${s} s` : s < 3600 ? `${Math.round(s / 60)} min` : s < 172800 ? `${Math.round(s / 3600)} h` : `${Math.round(s / 86400)} d`;
  return <time datetime={at} title={at}>{ms > 500 ? `in ${span}` : `${span} ago`}</time>;
}
