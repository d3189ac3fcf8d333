/**
 * The gateway's Hono app: mounts one route file per resource and translates
 * errors once. Independent of the transport: gateway/transport/ feeds it
 * requests with the verified peer in `env`, tests call `app.request(path, init, { peer })`.
 *
 * @module
 */
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { adminDevices, adminFleet, adminGroups, adminKeys, adminRollouts, adminTargets, adminTokens, requireApiToken } from "./admin/index.ts";
import type { Gateway, GatewayEnv } from "./env.ts";
import { dashboard } from "./ui/index.tsx";
import { routeLabel } from "./metrics.ts";
import { CaEndedError, CsrRejectedError } from "./pki/ca.ts";
import { caPem } from "./routes/ca.ts";
import { deviceFastPath, type FetchHead, jsonResponse } from "./routes/checkin.ts";
import { deviceAppsStates } from "./routes/device-apps-states.ts";
import { deviceEvents } from "./routes/device-events.ts";
import { deviceInfo } from "./routes/device-info.ts";
import { deviceSystemInfo } from "./routes/device-system-info.ts";
import { health } from "./routes/health.ts";
import { metrics } from "./routes/metrics.ts";
import { openapi } from "./routes/openapi.ts";
import { register } from "./routes/register.ts";
import { repo } from "./routes/repo.ts";
import { repoWait } from "./routes/repo-wait.ts";
import { DeviceRegisteredMeanwhileError, DeviceRevokedError, GroupExistsError, RolloutConflictError, StoreUnavailableError, TooManyLabelsError } from "./store/types.ts";
import { InvalidFleetQueryError } from "./fleet/query.ts";
import { InvalidRolloutError, RolloutNotFoundError, RolloutStateError } from "./rollouts/errors.ts";
import { InvalidDurationError } from "../lib/api/duration.ts";
import { SigningKeyUnavailableError } from "./ota/key-store.ts";
import { InvalidTargetError, TargetNotFoundError, TargetsTooLargeError } from "./ota/repo.ts";
import { DISK_FULL_RETRY_AFTER_S } from "./disk-full.ts";
import { isNoSpace } from "../lib/fs/why.ts";
import { sqliteBusy } from "./store/sqlite.ts";

export interface AppOptions {
  /** Sub-apps serving `/v2/...` and `/token` (the embedded registry), mounted at "/". */
  registry?: Hono<any>[];
}

/** The answer to an error a handler threw: its HTTP status and `{error}`; a 500 for anything unexpected (logged). */
function errorAnswer(gw: Gateway, err: unknown, method: string, path: string, json: (body: { error: string }, status: ContentfulStatusCode) => Response): Response {
  // A write refused for want of disk space: said once per spell (disk-full.ts), 507 with Retry-After, no stack.
  if (isNoSpace(err)) {
    const res = json({ error: gw.diskFull.note(err) }, 507);
    res.headers.set("retry-after", String(DISK_FULL_RETRY_AFTER_S));
    return res;
  }
  if (err instanceof HTTPException) {
    if (err.res) return err.getResponse();
    return json({ error: err.message || "Bad request" }, err.status);
  }
  if (err instanceof CsrRejectedError || err instanceof InvalidDurationError) return json({ error: err.message }, 400);
  if (err instanceof DeviceRevokedError) return json({ error: err.message }, 403);
  // Transient (a restarting SQLite writer thread, too many events or state writes waiting for the
  // database, SQLite's write lock held elsewhere for seconds): the device keeps its data and
  // retries, no stack trace per request.
  const unavailable = err instanceof StoreUnavailableError ? err : sqliteBusy(err);
  if (unavailable) {
    const res = json({ error: unavailable.message }, 503);
    res.headers.set("retry-after", String(unavailable.retryAfterSeconds));
    return res;
  }
  if (err instanceof InvalidFleetQueryError || err instanceof InvalidRolloutError || err instanceof TooManyLabelsError) return json({ error: err.message }, 400);
  if (err instanceof RolloutNotFoundError) return json({ error: err.message }, 404);
  if (err instanceof GroupExistsError || err instanceof DeviceRegisteredMeanwhileError || err instanceof RolloutConflictError || err instanceof RolloutStateError) return json({ error: err.message }, 409);
  if (err instanceof InvalidTargetError) return json({ error: err.message }, 400);
  if (err instanceof TargetNotFoundError) return json({ error: err.message }, 404);
  if (err instanceof TargetsTooLargeError) return json({ error: err.message }, 413);
  // An offline key is an operator decision, not a server fault: say which key is needed.
  if (err instanceof SigningKeyUnavailableError) return json({ error: err.message }, 409);
  // The factory CA's end: every registration fails until the operator acts (docs/keys.md), so say it, not "Internal error".
  if (err instanceof CaEndedError) return json({ error: err.message }, 503);
  console.error(`gateway: ${method} ${path} failed:`, err);
  return json({ error: "Internal error" }, 500);
}

export function createApp(gw: Gateway, opts: AppOptions = {}): Hono<GatewayEnv> & { fetchHead: FetchHead } {
  const app = new Hono<GatewayEnv>();

  app.use(async (c, next) => {
    c.set("gw", gw);
    await next();
    // The matched route's pattern ("/admin/devices/:uuid"), never the raw path: labels stay a fixed set.
    gw.metrics.count(routeLabel(c.req.routePath), c.res.status);
  });

  const admin = new Hono<GatewayEnv>()
    .use(requireApiToken) // roles: gateway/admin/auth.ts
    .route("/", adminDevices)
    .route("/", adminTargets)
    .route("/", adminTokens)
    .route("/", adminKeys)
    .route("/", adminGroups)
    .route("/", adminRollouts)
    .route("/", adminFleet(gw));

  app
    .route("/", health)
    .route("/", metrics)
    .route("/", openapi)
    .route("/", caPem)
    .route("/", register)
    .route("/", repoWait) // before /repo/:file
    .route("/", repo)
    .route("/", deviceEvents)
    .route("/", deviceAppsStates)
    .route("/", deviceSystemInfo)
    .route("/", deviceInfo)
    .route("/admin", admin)
    .route("/ui", dashboard(app)) // the fleet dashboard: gateway/ui/, calls /admin with the user's token
    // The gateway's bare URL is what a person types into a browser (no device or API client asks
    // for it): sent on to the dashboard, which asks for a sign-in, rather than a JSON 404.
    .get("/", (c) => c.redirect("/ui/", 302));
  for (const sub of opts.registry ?? []) app.route("/", sub);

  app.notFound((c) => c.json({ error: `Not found: ${c.req.method} ${c.req.path}` }, 404));
  app.onError((err, c) => errorAnswer(gw, err, c.req.method, c.req.path, (body, status) => c.json(body, status)));
  // A device's check-ins and push waits skip the router (same answers): routes/checkin.ts; fetchHead is their way from the TLS transport.
  const device = deviceFastPath(gw, app.fetch, (err, method, path) => errorAnswer(gw, err, method, path, jsonResponse));
  app.fetch = device.fetch;
  return Object.assign(app, { fetchHead: device.fetchHead });
}
