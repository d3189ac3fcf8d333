/**
 * The device fast path: what a fleet sends all day is answered here, before Hono's dispatch,
 * middleware chain and context, which cost more than the work itself (bench/gateway-checkin) and,
 * for a held push request, would stay alive for as long as it is held (bench/push). The routes,
 * one table below:
 * - `GET /repo/<metadata>.json`: the device's signed view (./repo.ts);
 * - `GET /repo/wait`: push, held until news (the policy is ./repo-wait.ts's `waitForNews`);
 * - `POST /events`, `POST /apps-states` (read with ./device-events.ts's and
 *   ./device-apps-states.ts's compiled readers).
 *
 * One dispatcher for all of them, so each request is parsed once (path and query), the device
 * is looked up once (the cache's fresh row, else one checkDevice), its sighting is noted once and
 * its answer counted once in /metrics, under the same route label and status as the Hono route.
 * Anything else (a path not in the table, a path that needs decoding, no certificate, a refused
 * device) goes to the app unchanged, so refusals and errors keep one source: the routes in
 * ./repo.ts, ./repo-wait.ts, ./device-events.ts and ./device-apps-states.ts, and app.ts's onError.
 *
 * @module
 */
import type { Bindings, Gateway } from "../env.ts";
import { cachedDeviceInGoodStanding, checkDevice, noteCheckIn } from "../devices/auth.ts";
import type { DeviceRow } from "../store/types.ts";
import { urlTarget } from "../transport/url.ts";
import { readAppsStates } from "./device-apps-states.ts";
import { readEventBatch } from "./device-events.ts";
import { deviceView, METADATA_FILE, METADATA_HEADERS } from "./repo.ts";
import { waitForNews } from "./repo-wait.ts";
import type { JsonBodyReader } from "./_validate.ts";

type Fetch = (req: Request, env?: Bindings, ctx?: any) => Response | Promise<Response>;
/** The app's error answer for what a handler threw (app.ts's onError), by method and path. */
export type ErrorAnswer = (err: unknown, method: string, path: string) => Response;

/** A JSON answer that says its length (the transport then writes it without a stream reader). */
export const jsonResponse = (body: unknown, status: number) => {
  const text = JSON.stringify(body);
  return new Response(text, { status, headers: { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)) } });
};

/**
 * Response options of a metadata answer by body length: a poll answers the same few files of the
 * same few lengths, so their headers are built once (a Response copies its init).
 */
const metadataInits = new Map<number, ResponseInit>();
function metadataInit(length: number): ResponseInit {
  let init = metadataInits.get(length);
  if (!init) {
    if (metadataInits.size >= 64) metadataInits.clear();
    metadataInits.set(length, (init = { status: 200, headers: { ...METADATA_HEADERS, "content-length": String(length) } }));
  }
  return init;
}
const NO_CONTENT: ResponseInit = { status: 204 };

/** A device route's handler, given the device in good standing. */
type DeviceHandler = (d: DeviceRow, req: Request, env: Bindings, path: string, query: string) => Response | Promise<Response>;

/**
 * One device route: its method, the label /metrics counts its answers under (the Hono route's
 * pattern), its handler, and what to do with the handler's answer or error. Those two are made
 * once per route, not per request: a push wait is held for up to a minute, and a closure per
 * request would stay with it (the transport drops the request itself while it waits).
 */
interface DeviceRoute {
  readonly method: "GET" | "POST";
  readonly label: string;
  readonly handle: DeviceHandler;
  /** Counts the answer in /metrics and returns it. */
  readonly counted: (res: Response) => Response;
  /** The app's answer to what the handler threw, counted. */
  readonly failed: (err: unknown) => Response;
}

/**
 * Wraps the app's fetch with the device fast path; `failed` is the app's answer to what a
 * handler threw.
 */
export function withDeviceFastPath(gw: Gateway, app: Fetch, failed: ErrorAnswer): Fetch {
  const route = (method: "GET" | "POST", label: string, handle: DeviceHandler): DeviceRoute => {
    const counted = (res: Response) => (gw.metrics.count(label, res.status), res);
    // Logged under the route's pattern (as /metrics counts it), not the request's path.
    return { method, label, handle, counted, failed: (err) => counted(failed(err, method, label)) };
  };
  const metadata = route("GET", "/repo/:file", async (d, _req, _env, path) => {
    const file = path.slice(6);
    const bytes = await gw.tuf.metadata(file, deviceView(gw, d.uuid)); // the device's signed view, as the route answers
    return bytes ? new Response(bytes as Uint8Array<ArrayBuffer>, metadataInit(bytes.byteLength)) : jsonResponse({ error: `Metadata "${file}" not found` }, 404);
  });
  const wait = route("GET", "/repo/wait", (_d, _req, env, _path, query) => {
    const q = new URLSearchParams(query);
    return waitForNews(gw, q.get("after") ?? undefined, q.get("timeout") ?? undefined, env.connection);
  });
  /** A device POST of a JSON body: read with the route's compiled reader, then `act` on the value. */
  const posted = <V>(label: string, read: JsonBodyReader<V>, act: (d: DeviceRow, value: V) => Promise<Response>) =>
    route("POST", label, async (d, req) => {
      const r = await read(req);
      return "problem" in r ? jsonResponse({ error: r.problem.error }, r.problem.status) : act(d, r.value);
    });
  const events = posted("/events", readEventBatch, async (d, batch) => {
    const stored = await gw.store.appendEvents(d.uuid, batch);
    return jsonResponse({ received: batch.length, stored }, 200);
  });
  const appsStates = posted("/apps-states", readAppsStates, async (d, states) => {
    await gw.store.putAppsStates(d.uuid, states);
    return new Response(null, NO_CONTENT);
  });

  /** The device routes by method and exact path; under /repo/, a metadata file name (checked before any lookup). */
  const exact = { GET: new Map<string, DeviceRoute>(), POST: new Map<string, DeviceRoute>() };
  for (const r of [wait, events, appsStates]) exact[r.method].set(r.label, r);
  const routeOf = (method: "GET" | "POST", path: string): DeviceRoute | undefined =>
    exact[method].get(path) ?? (method === "GET" && path.startsWith("/repo/") && METADATA_FILE.test(path.slice(6)) ? metadata : undefined);

  /** Answers with the route's handler: one sighting, one count, errors through the app's answer. */
  function answer(route: DeviceRoute, d: DeviceRow, req: Request, env: Bindings, path: string, query: string): Response | Promise<Response> {
    noteCheckIn(gw.sightings, d, req.headers);
    let res: Response | Promise<Response>;
    try {
      res = route.handle(d, req, env, path, query);
    } catch (err) {
      return route.failed(err);
    }
    return res instanceof Response ? route.counted(res) : res.then(route.counted, route.failed);
  }

  return (req, env, ctx) => {
    const peer = env?.peer;
    if (!peer) return app(req, env, ctx);
    const method = req.method;
    if (method !== "GET" && method !== "POST") return app(req, env, ctx);
    const { path, query } = urlTarget(req.url);
    // A path that needs decoding goes to the app, which routes on the decoded path.
    const route = path.includes("%") ? undefined : routeOf(method, path);
    if (!route) return app(req, env, ctx);
    const cached = cachedDeviceInGoodStanding(gw.devices, peer);
    if (cached) return answer(route, cached, req, env, path, query);
    return checkDevice(gw.devices, peer).then((r) => ("device" in r ? answer(route, r.device, req, env, path, query) : app(req, env, ctx)));
  };
}
