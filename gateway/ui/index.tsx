/* @jsxImportSource hono/jsx */
/**
 * The fleet dashboard at /ui/: server-rendered pages (hono/jsx) over the
 * gateway's own admin API, called in process with the signed-in user's token
 * (gateway/ui/api.ts), so the API's role checks are the one authority. Every
 * POST needs the session's CSRF token and a same-origin Origin (when sent).
 *
 * Every .tsx file names its JSX runtime (hono/jsx) in a pragma on its first line: bun takes
 * tsconfig.json's from the working directory's project, so `bun /path/to/gateway/main.ts` run
 * from elsewhere looked for React and failed to start. (Bun reads that pragma anywhere in a
 * file's comments, so no other comment may spell it out.)
 *
 * @module
 */
import { Hono, type Context } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import type {
  DeviceDetail, DeviceGroupList, FleetDeviceList, FleetSummary, GroupDetail, GroupList, GroupMembersChanged, RolloutDetail, RolloutList, TargetsList, TokenCreated, TokenList, UpdateList,
} from "../../lib/api/admin.ts";
import { labelCountProblem, MAX_DEVICE_LABELS } from "../../lib/api/admin.ts";
import { tagList } from "../../lib/cli/comma-list.ts";
import { checkToken, registrationTokenRefused } from "../admin/auth.ts";
import { limit } from "../validate.ts";
import type { GatewayEnv } from "../env.ts";
import { StoreUnavailableError, TooManyLabelsError } from "../store/types.ts";
import { adminApi, ApiCallError, type AdminApi } from "./api.ts";
import { databaseDown, needsAttention, type Attention } from "./attention.tsx";
import { bodyIsForm, formField, notAFormMessage, refusalOf, typedIn, type Refusal } from "./form.ts";
import { labelsFromForm } from "./labels-form.ts";
import { CSP, liveRefresh, Page, Refused } from "./layout.tsx";
import { DevicePage, type DeviceGroups } from "./pages/device.tsx";
import { DevicesPage, lastPage, LIST_PARAMS, MAX_PAGE, PAGE_SIZE, type ListParams } from "./pages/devices.tsx";
import { GroupPage, GroupsPage } from "./pages/groups.tsx";
import { LoginPage } from "./pages/login.tsx";
import { Overview } from "./pages/overview.tsx";
import { RolloutPage, RolloutsPage } from "./pages/rollouts.tsx";
import { TargetsPage } from "./pages/targets.tsx";
import { TokensPage } from "./pages/tokens.tsx";
import { notice } from "./notice.ts";
import { csrfToken, csrfValid, openSession, sealSession, SESSION_COOKIE, SESSION_COOKIE_SECONDS, SESSION_SECONDS, sessionRanOut, type Session } from "./session.ts";

/** The one-time notice of a token just created: shown by the next GET /ui/tokens of the same session. */
const tokenCreated = notice<TokenCreated & { hwid?: string; sid: string }>("ota_ui_created", "/ui/tokens");
/** Why a session just ended (its token expired or was revoked, or it ran its time): shown once by the sign-in page it lands on. */
const sessionEnded = notice<{ why: string }>("ota_ui_ended", "/ui/login");
/** What adding a device to a group did ("added to", "already in"): shown once by the device's page, in the same session. */
const addedToGroup = notice<{ sid: string; uuid: string; text: string }>("ota_ui_grouped", "/ui/devices");
/** The notice for a session that ran its time (the token may still be good). */
const RAN_OUT = `a sign-in lasts ${SESSION_SECONDS / 3600} hours`;

/** Ends the browser's session and, when there is a reason to give, leaves it for the sign-in page to say once. */
async function endSession(c: Context<UiEnv>, why: string | undefined) {
  deleteCookie(c, SESSION_COOKIE, { path: "/", secure: true });
  if (why) await sessionEnded.leave(c, { why });
}

interface UiEnv extends GatewayEnv {
  Variables: GatewayEnv["Variables"] & { session: Session; csrf: string; api: AdminApi };
}

/**
 * Whether a request's Origin, when it sends one, is the dashboard's own: https, and the host it was
 * sent to. The scheme is https whatever the request's URL says (http from a TLS-terminating proxy,
 * --proxy-listen): the session cookie is Secure, so the dashboard only works over https, and a page
 * at http://<the same host and port> is another origin.
 */
const sameOrigin = (c: Context) => {
  const origin = c.req.header("origin");
  if (!origin || origin === "null") return origin === undefined;
  try {
    const { protocol, host } = new URL(origin);
    // Host header over HTTP/1.1, :authority (the request URL) over HTTP/2.
    return protocol === "https:" && host === (c.req.header("host") ?? new URL(c.req.url).host);
  } catch {
    return false;
  }
};

/** The address a GET was asked at (path and query), which a refresh may ask again; none for another method. */
const ownAddress = (c: Context) => {
  if (c.req.method !== "GET") return undefined;
  const { pathname, search } = new URL(c.req.url);
  return pathname + search;
};

/** The dashboard; `app` is the gateway app whose /admin API the pages call. */
export function dashboard(app: Hono<any>) {
  const ui = new Hono<UiEnv>();

  ui.use(async (c, next) => {
    const t0 = performance.now();
    await next();
    // The whole server time of the page next to the store time the API reported (`db`).
    const api = c.res.headers.get("server-timing");
    c.header("server-timing", `${api ? `${api}, ` : ""}ui;dur=${(performance.now() - t0).toFixed(1)}`);
    c.header("content-security-policy", CSP);
    c.header("x-content-type-options", "nosniff");
    // same-origin, not no-referrer: with no-referrer the browser sends "Origin: null" on form posts.
    c.header("referrer-policy", "same-origin");
    c.header("cache-control", "no-store");
  });

  // Cross-site form posts are refused before anything else (SameSite=Strict already keeps the cookie away).
  ui.use(async (c, next) => {
    if (c.req.method !== "GET" && c.req.method !== "HEAD" && !sameOrigin(c)) return c.text("Cross-origin request refused", 403);
    await next();
  });

  /**
   * A page in the frame; signed in, with what needs a person (./attention.tsx), unless the caller has
   * it already. `href`: the page's own address, which its refresh fetches; a GET's is where it was
   * asked, a page answering a form's POST (its input refused) must name it.
   */
  const render = async (c: Context<UiEnv>, title: string, body: unknown, { status = 200, attention, href = ownAddress(c) }: { status?: number; attention?: Attention[]; href?: string } = {}) => {
    const user = c.var.session ? { role: c.var.session.role, csrf: c.var.csrf } : undefined;
    const items = user ? (attention ?? (await needsAttention(c.var.gw))) : [];
    return c.html(
      <Page title={title} path={c.req.path} user={user} attention={items} href={href}>
        {body as any}
      </Page>,
      status as 200,
    );
  };

  const overview = async (c: Context<UiEnv>) => {
    // The fleet is read from the database: when that read fails for it, the page says so instead of
    // refusing, with what else needs a person.
    const summary = await c.var.api<FleetSummary>("GET", "/admin/fleet/summary").catch(async (err: unknown) => {
      if (!(err instanceof ApiCallError && err.status === 503)) throw err;
      const down = await databaseDown(c.var.gw);
      if (!down) throw err;
      return down;
    });
    const down = summary instanceof StoreUnavailableError;
    const attention = await needsAttention(c.var.gw, down ? summary : undefined);
    return render(c, "Overview", <Overview s={down ? undefined : summary.body} attention={attention} />, { attention });
  };

  // Forms are small; nobody, signed in or not, makes the gateway read more.
  ui.post("*", limit(64 * 1024));

  ui.get("/login", async (c) => {
    const ended = await sessionEnded.take(c);
    const again = ended?.why === RAN_OUT ? "Sign in again." : "Sign in with a current token.";
    return render(c, "Sign in", <LoginPage error={ended && `Your session ended: ${ended.why}. ${again}`} />);
  });

  ui.post("/login", async (c) => {
    const form = await c.req.parseBody();
    const token = typeof form.token === "string" ? form.token.trim() : "";
    const check = token ? await checkToken(c.var.gw, token) : { refused: "no token given" };
    const caller = "caller" in check ? check.caller : undefined;
    if (!caller || (caller.role !== "admin" && caller.role !== "viewer")) {
      // A registration token is told which tokens sign in (admin, viewer), not the /admin API's list.
      const why = caller
        ? `it is a ${caller.role} token`
        : "refused" in check
          ? check.role === "registration"
            ? registrationTokenRefused(["admin", "viewer"])
            : check.refused
          : "";
      return render(c, "Sign in", <LoginPage error={`That token cannot sign in: ${why}; it needs an unrevoked, unexpired admin or viewer token.`} />, { status: 401 });
    }
    const { value } = await sealSession(c.var.gw, token, caller.role);
    setCookie(c, SESSION_COOKIE, value, { path: "/", httpOnly: true, secure: true, sameSite: "Strict", maxAge: SESSION_COOKIE_SECONDS });
    return c.redirect("/ui/", 303);
  });

  // Everything else needs a session; POSTs also its CSRF token (form field or x-csrf-token header).
  ui.use(async (c, next) => {
    const cookie = getCookie(c, SESSION_COOKIE);
    const session = await openSession(c.var.gw, cookie);
    if (!session) {
      const ranOut = await sessionRanOut(c.var.gw, cookie);
      if (ranOut) await endSession(c, RAN_OUT);
      if (c.req.method === "GET") return c.redirect("/ui/login", 303);
      return c.text(ranOut ? `Your session ended (${RAN_OUT}): sign in again` : "Sign in first", 401);
    }
    c.set("session", session);
    c.set("csrf", await csrfToken(c.var.gw, session));
    if (c.req.method === "POST") {
      const isForm = bodyIsForm(c);
      const form = isForm ? await c.req.parseBody() : {};
      const given = c.req.header("x-csrf-token") ?? (typeof form._csrf === "string" ? form._csrf : undefined);
      if (!(await csrfValid(c.var.gw, session, given))) return c.text("Missing or wrong CSRF token: reload the page and try again", 403);
      if (!isForm) return c.text(notAFormMessage(c), 415);
    }
    c.set("api", adminApi(app, session.token, c.env));
    // "/ui/" and "/ui" are both the overview (a mounted sub-app's "/" is only "/ui").
    if (c.req.method === "GET" && c.req.path === "/ui/") return overview(c);
    await next();
  });

  // The admin API's refusals of anything but a form's input (orAgain), shown as a page with its status and words.
  ui.onError(async (err, c) => {
    if (!(err instanceof ApiCallError)) throw err;
    // The token itself no longer works (revoked, expired): the session ends with it, and the
    // sign-in page it lands on says why.
    if (err.status === 401 || err.status === 403) {
      const check = await checkToken(c.var.gw, c.var.session.token);
      if (err.status === 401 || !("caller" in check)) {
        await endSession(c, "refused" in check ? check.refused : undefined);
        return c.redirect("/ui/login", 303);
      }
    }
    return render(c, "Refused", <Refused message={err.message} />, { status: err.status });
  });

  /**
   * A form's action; its input refused (./form.ts) brings back the form's page, `again`, saying
   * why above the form, with what was typed in it.
   */
  const orAgain = async (action: () => Promise<Response>, again: (refused: Refusal) => Promise<Response>) => {
    try {
      return await action();
    } catch (err) {
      const refused = refusalOf(err);
      if (!refused) throw err;
      return again(refused);
    }
  };

  ui.post("/logout", (c) => {
    deleteCookie(c, SESSION_COOKIE, { path: "/", secure: true });
    return c.redirect("/ui/login", 303);
  });

  ui.get("/", overview);

  ui.get("/devices", async (c) => {
    const p: ListParams = {};
    for (const k of [...LIST_PARAMS, "page"] as const) {
      const v = c.req.query(k);
      if (v) p[k] = v;
    }
    // A page is a whole number from 1 (anything else is page 1), at most the last (found below).
    const asked = /^[0-9]+$/.test(p.page ?? "") ? Math.min(Math.max(1, Number(p.page)), MAX_PAGE) : 1;
    const q = new URLSearchParams();
    for (const k of LIST_PARAMS) if (p[k]) q.set(k, p[k]!);
    // A group (or a rollout by tag) never counts a revoked device (docs/rollouts.md), while the list
    // shows them, as revoked: filtered by either, with no status chosen, it says how many it shows
    // (the API's count of them, from the same read as the total). A tag's list says too how many
    // only report following the tag (DeviceList, from the API's reportedOnly).
    const revokedToo = (p.group || p.tag) && !p.status;
    const pageOf = (n: number) => {
      const at = new URLSearchParams(q);
      at.set("limit", String(PAGE_SIZE));
      at.set("offset", String((n - 1) * PAGE_SIZE));
      return c.var.api<FleetDeviceList>("GET", `/admin/fleet/devices?${at}`);
    };
    return orAgain(
      async () => {
        const asAsked = await pageOf(asked);
        // Past the last page (page=999 of 6, or devices gone since the link was made): the last one.
        const page = Math.min(asked, lastPage(asAsked.body.total ?? 0));
        const { body, timing } = page < asked ? await pageOf(page) : asAsked;
        if (timing) c.header("server-timing", timing);
        const ms = /dur=([0-9.]+)/.exec(timing ?? "")?.[1] ?? "?";
        return render(c, "Devices", <DevicesPage p={p} page={page} list={body} revoked={revokedToo ? body.revoked : undefined} ms={ms} />);
      },
      // A filter the API refuses (`label=a`): the filters again, as given, saying why.
      async (refused) => render(c, "Devices", <DevicesPage p={p} refused={refused} />, { status: refused.status }),
    );
  });

  /** A device's page; `refused`: one of its forms' input, refused. */
  const devicePage = async (c: Context<UiEnv>, uuid: string, refused?: Refusal) => {
    const api = c.var.api;
    const path = `/admin/devices/${encodeURIComponent(uuid)}`;
    const [d, updates, status, groups] = await Promise.all([
      api<DeviceDetail>("GET", path),
      api<UpdateList>("GET", `${path}/updates`),
      api<FleetDeviceList>("GET", `/admin/fleet/devices?uuid=${encodeURIComponent(uuid)}&limit=1`),
      // Outside the live region: looked up when the page loads, not at each refresh.
      liveRefresh(c) ? undefined : deviceGroups(c, uuid),
    ]);
    const grouped = refused ? undefined : await addedToGroup.take(c);
    return render(
      c,
      d.body.name,
      <DevicePage
        d={d.body}
        updates={updates.body.updates}
        status={status.body.devices.find((x) => x.uuid === uuid)}
        groups={groups}
        notice={grouped?.sid === c.var.session.sid && grouped.uuid === uuid ? grouped.text : undefined}
        csrf={c.var.csrf}
        canWrite={c.var.session.role === "admin"}
        refused={refused}
      />,
      { status: refused?.status, href: `/ui/devices/${encodeURIComponent(uuid)}` },
    );
  };

  /**
   * The static groups a device may be added to, and the groups, static or dynamic, it is in now
   * (a revoked device is in none): one request, answered from one read of the device's row.
   */
  const deviceGroups = async (c: Context<UiEnv>, uuid: string): Promise<DeviceGroups> => {
    const { body } = await c.var.api<DeviceGroupList>("GET", `/admin/devices/${encodeURIComponent(uuid)}/groups`);
    return { addable: body.groups.filter((g) => g.kind === "static").map((g) => g.name), member: body.groups.filter((g) => g.member) };
  };

  ui.get("/devices/:uuid", (c) => devicePage(c, c.req.param("uuid")));

  /** The POST of one of a device's forms (`form` names it): `act` with its fields, then the device's page. */
  const deviceForm = (form: string, act: (c: Context<UiEnv>, uuid: string, fields: Record<string, unknown>) => Promise<unknown>) =>
    ui.post(`/devices/:uuid/${form}`, async (c) => {
      const uuid = c.req.param("uuid");
      const fields = await c.req.parseBody();
      return orAgain(
        async () => {
          await act(c, uuid, fields);
          return c.redirect(`/ui/devices/${encodeURIComponent(uuid)}`, 303);
        },
        (refused) => devicePage(c, uuid, { ...refused, form, typed: typedIn(fields) }),
      );
    });

  deviceForm("revoke", (c, uuid) => c.var.api("POST", `/admin/devices/${encodeURIComponent(uuid)}/revoke`));

  deviceForm("tags", (c, uuid, form) => c.var.api("PUT", `/admin/devices/${encodeURIComponent(uuid)}/tags`, { tags: tagList(formField(form, "tags")) }));

  deviceForm("labels", async (c, uuid, form) => {
    const path = `/admin/devices/${encodeURIComponent(uuid)}`;
    const { body } = await c.var.api<DeviceDetail>("GET", path);
    // One key=value a line, replacing the labels (./labels-form.ts).
    const current = body.labels ?? {};
    const change = labelsFromForm(formField(form, "labels"), current);
    // The store's rule, checked first, so that more lines than one request may set are refused in
    // its words (TooManyLabelsError), not in the request schema's.
    const over = labelCountProblem(current, change.set, change.remove, MAX_DEVICE_LABELS);
    if (over) throw new TooManyLabelsError(uuid, over.would, over.had, MAX_DEVICE_LABELS);
    await c.var.api("PUT", `${path}/labels`, change);
  });

  deviceForm("group", async (c, uuid, form) => {
    const group = formField(form, "group");
    const { body } = await c.var.api<GroupMembersChanged>("POST", `/admin/groups/${encodeURIComponent(group)}/members`, { add: [uuid] });
    await addedToGroup.leave(c, { sid: c.var.session.sid, uuid, text: body.added ? `Added to group ${group}.` : `Already in group ${group}: nothing changed.` });
  });

  const groupsPage = async (c: Context<UiEnv>, refused?: Refusal) => {
    const { body } = await c.var.api<GroupList>("GET", "/admin/groups");
    return render(c, "Groups", <GroupsPage list={body} csrf={c.var.csrf} canWrite={c.var.session.role === "admin"} refused={refused} />, { status: refused?.status, href: "/ui/groups" });
  };

  ui.get("/groups", (c) => groupsPage(c));

  ui.post("/groups", async (c) => {
    const form = await c.req.parseBody();
    return orAgain(
      async () => {
        const name = formField(form, "name").trim();
        const query = String(form.query ?? "").trim();
        await c.var.api("POST", "/admin/groups", { name, ...(query ? { query } : {}) });
        return c.redirect(`/ui/groups/${encodeURIComponent(name)}`, 303);
      },
      (refused) => groupsPage(c, { ...refused, typed: typedIn(form) }),
    );
  });

  const groupPage = async (c: Context<UiEnv>, name: string, refused?: Refusal) => {
    const { body } = await c.var.api<GroupDetail>("GET", `/admin/groups/${encodeURIComponent(name)}?limit=200`);
    const href = `/ui/groups/${encodeURIComponent(name)}`;
    return render(c, `Group ${body.name}`, <GroupPage g={body} csrf={c.var.csrf} canWrite={c.var.session.role === "admin"} refused={refused} />, { status: refused?.status, href });
  };

  ui.get("/groups/:name", (c) => groupPage(c, c.req.param("name")));

  ui.post("/groups/:name/remove", async (c) => {
    const name = c.req.param("name");
    const form = await c.req.parseBody();
    return orAgain(
      async () => {
        await c.var.api("POST", `/admin/groups/${encodeURIComponent(name)}/members`, { remove: [formField(form, "uuid")] });
        return c.redirect(`/ui/groups/${encodeURIComponent(name)}`, 303);
      },
      (refused) => groupPage(c, name, refused),
    );
  });

  ui.get("/rollouts", async (c) => {
    const { body } = await c.var.api<RolloutList>("GET", "/admin/rollouts");
    return render(c, "Rollouts", <RolloutsPage list={body} />);
  });

  const rolloutPage = async (c: Context<UiEnv>, id: string, refused?: Refusal) => {
    const { body } = await c.var.api<RolloutDetail>("GET", `/admin/rollouts/${encodeURIComponent(id)}`);
    const href = `/ui/rollouts/${encodeURIComponent(id)}`;
    return render(c, `Rollout ${body.id}`, <RolloutPage r={body} csrf={c.var.csrf} canWrite={c.var.session.role === "admin"} refused={refused} />, { status: refused?.status, href });
  };

  ui.get("/rollouts/:id", (c) => rolloutPage(c, c.req.param("id")));

  ui.post("/rollouts/:id/:action{pause|resume|advance|cancel}", async (c) => {
    const id = c.req.param("id");
    // Advance from the wave the page showed: a double click releases one wave, the second is refused.
    const fromWave = (await c.req.parseBody()).fromWave;
    const query = c.req.param("action") === "advance" && typeof fromWave === "string" ? `?fromWave=${encodeURIComponent(fromWave)}` : "";
    return orAgain(
      async () => {
        await c.var.api("POST", `/admin/rollouts/${encodeURIComponent(id)}/${c.req.param("action")}${query}`);
        return c.redirect(`/ui/rollouts/${encodeURIComponent(id)}`, 303);
      },
      (refused) => rolloutPage(c, id, refused),
    );
  });

  ui.get("/targets", async (c) => {
    const [targets, summary] = await Promise.all([
      c.var.api<TargetsList>("GET", "/admin/targets"),
      c.var.api<FleetSummary>("GET", "/admin/fleet/summary"),
    ]);
    const running = new Map(summary.body.versions.flatMap((v) => (v.target ? [[v.target, v.devices] as const] : [])));
    return render(c, "Targets", <TargetsPage targets={targets.body} running={running} />);
  });

  const tokensPage = async (c: Context<UiEnv>, created?: TokenCreated & { hwid?: string }, refused?: Refusal) => {
    const { body } = await c.var.api<TokenList>("GET", "/admin/tokens");
    return render(
      c,
      "Tokens",
      <TokensPage list={body} csrf={c.var.csrf} canWrite={c.var.session.role === "admin"} created={created} publicUrl={c.var.gw.publicUrl} refused={refused} />,
      { status: refused?.status, href: "/ui/tokens" },
    );
  };

  ui.get("/tokens", async (c) => {
    const created = await tokenCreated.take(c);
    return tokensPage(c, created?.sid === c.var.session.sid ? created : undefined);
  });

  ui.post("/tokens", async (c) => {
    const form = await c.req.parseBody();
    return orAgain(() => createToken(c, form), (refused) => tokensPage(c, undefined, { ...refused, form: "create", typed: typedIn(form) }));
  });

  const createToken = async (c: Context<UiEnv>, form: Record<string, unknown>) => {
    const text = (k: string) => (typeof form[k] === "string" && (form[k] as string).trim() ? (form[k] as string).trim() : undefined);
    const tags = tagList(text("tags"));
    const req = {
      role: "registration",
      ...(text("name") ? { name: text("name") } : {}),
      ...(tags.length ? { tags } : {}),
      ...(text("hwid") ? { hwid: text("hwid") } : {}),
      ...(text("maxUses") ? { maxUses: Number(text("maxUses")) } : {}),
      ...(text("expiresIn") ? { expiresIn: text("expiresIn") } : {}),
    };
    const { body } = await c.var.api<TokenCreated>("POST", "/admin/tokens", req);
    // The secret travels to the next page in a sealed one-minute cookie, not in a URL, and a reload
    // of that page neither re-posts the form nor shows the secret again.
    await tokenCreated.leave(c, { ...body, hwid: text("hwid"), sid: c.var.session.sid });
    return c.redirect("/ui/tokens", 303);
  };

  ui.post("/tokens/:id/revoke", (c) =>
    orAgain(
      async () => {
        await c.var.api("POST", `/admin/tokens/${encodeURIComponent(c.req.param("id"))}/revoke`);
        return c.redirect("/ui/tokens", 303);
      },
      (refused) => tokensPage(c, undefined, refused),
    ),
  );

  // Any other address under /ui: a page of the dashboard saying so, its navigation there, not the API's JSON 404.
  ui.all("*", (c) =>
    render(
      c,
      "Not found",
      <>
        <h1>Page not found</h1>
        <p>{`The dashboard has no page at ${c.req.path}.`}</p>
        <p>
          <a href="/ui/">Go to the overview</a>
        </p>
      </>,
      { status: 404 },
    ),
  );

  return ui;
}
