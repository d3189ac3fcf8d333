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
 * Each route has one implementation, reached two ways: `fetch` (a web Request: app.fetch, so the
 * tests' app.request and the plain listener behind a proxy) and `fetchHead` (the TLS transport's
 * parsed head and whole body, TransportOptions.fetchHead: no Request built, no Response read).
 * A handler reads the headers and body through what both have, and answers a `Reply` whose header
 * lines are built once per shape; `fetch` turns it into a Response, the transport writes it as
 * is. `fetchHead` takes only a device whose row is in the cache in good standing (admission has
 * just looked it up): any other device goes through `fetch`, which checks it and refuses it as the
 * app does.
 *
 * @module
 */
import type { Bindings, Gateway } from "../env.ts";
import { cachedDeviceInGoodStanding, checkDevice, noteCheckIn } from "../devices/auth.ts";
import type { DeviceRow } from "../store/types.ts";
import type { HeadAnswer, HeadRequest } from "../transport/options.ts";
import { urlTarget } from "../transport/url.ts";
import { readAppsStates } from "./device-apps-states.ts";
import { readEventBatch } from "./device-events.ts";
import { deviceView, METADATA_FILE, METADATA_HEADERS, metadataHeaders } from "./repo.ts";
import { waitForNews } from "./repo-wait.ts";
import type { JsonBodyReader } from "../validate.ts";
import { eventsPastRate, oneWriteAtATime } from "../devices/writes.ts";

type Fetch = (req: Request, env?: Bindings, ctx?: any) => Response | Promise<Response>;
/** The app's error answer for what a handler threw (app.ts's onError), by method and path. */
export type ErrorAnswer = (err: unknown, method: string, path: string) => Response;
/** The transport's head handler (TransportOptions.fetchHead). */
export type FetchHead = (req: HeadRequest, env: Bindings) => HeadAnswer | Response | Promise<HeadAnswer | Response> | undefined;

/** A JSON answer that says its length (the transport then writes it without a stream reader). */
export const jsonResponse = (body: unknown, status: number) => {
  const text = JSON.stringify(body);
  return new Response(text, { status, headers: { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)) } });
};

/**
 * The status and headers of an answer a device route gives all day, serialised once (for the
 * transport) and as ResponseInit by body length (for a Response: it copies its init).
 */
class Shape {
  /** The header lines as a Response's headers are written: lower-case names in sorted order. */
  readonly head: string;
  readonly #inits = new Map<number, ResponseInit>();
  constructor(
    readonly status: number,
    readonly headers: Readonly<Record<string, string>>,
  ) {
    this.head = Object.keys(headers)
      .map((k) => [k.toLowerCase(), headers[k]!] as const)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join("");
  }

  reply(body: Uint8Array | null): Reply {
    return { status: this.status, head: this.head, body, shape: this };
  }

  /** The Response of a reply: same status, headers and body, and its length said. */
  response(body: Uint8Array | null): Response {
    const length = body ? body.byteLength : -1;
    let init = this.#inits.get(length);
    if (!init) {
      if (this.#inits.size >= 64) this.#inits.clear(); // a poll answers the same few files of the same few lengths
      this.#inits.set(length, (init = { status: this.status, headers: body ? { ...this.headers, "content-length": String(length) } : this.headers }));
    }
    return new Response(body as Uint8Array<ArrayBuffer> | null, init);
  }
}

/** A device route's answer: what the transport writes as is (HeadAnswer), and its shape for a Response. */
interface Reply extends HeadAnswer {
  readonly shape: Shape;
}
type Answer = Reply | Response;

const asResponse = (a: Answer): Response => (a instanceof Response ? a : a.shape.response(a.body));

const METADATA = new Shape(200, METADATA_HEADERS);
/** The shape of each other metadata headers object (./repo.ts metadataHeaders: one per tag list). */
const metadataShapes = new WeakMap<object, Shape>();
function metadataShape(headers: Readonly<Record<string, string>>): Shape {
  if (headers === METADATA_HEADERS) return METADATA;
  let shape = metadataShapes.get(headers);
  if (!shape) metadataShapes.set(headers, (shape = new Shape(200, headers)));
  return shape;
}
const JSON_OK = new Shape(200, { "content-type": "application/json" });
const NO_CONTENT = new Shape(204, {});

/** What a device route reads of its request: a web Request (app.fetch) or the transport's parsed head and whole body. */
type DeviceRequest = Request | HeadRequest;

/** A device route's handler, given the device in good standing. */
type DeviceHandler = (d: DeviceRow, req: DeviceRequest, env: Bindings, path: string, query: string) => Answer | Promise<Answer>;

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
  readonly counted: (res: Answer) => Answer;
  /** The app's answer to what the handler threw, counted. */
  readonly failed: (err: unknown) => Answer;
}

/** The app's fetch wrapped with the device fast path, and the same routes for the transport's parsed heads. */
export interface DeviceFastPath {
  fetch: Fetch;
  fetchHead: FetchHead;
}

/**
 * Wraps the app's fetch with the device fast path; `failed` is the app's answer to what a
 * handler threw.
 */
export function deviceFastPath(gw: Gateway, app: Fetch, failed: ErrorAnswer): DeviceFastPath {
  const route = (method: "GET" | "POST", label: string, handle: DeviceHandler): DeviceRoute => {
    const counted = (res: Answer) => (gw.metrics.count(label, res.status), res);
    // Logged under the route's pattern (as /metrics counts it), not the request's path.
    return { method, label, handle, counted, failed: (err) => counted(failed(err, method, label)) };
  };
  const metadata = route("GET", "/repo/:file", (d, _req, _env, path) => {
    const file = path.slice(6);
    const found = (bytes: Uint8Array | undefined) => (bytes ? metadataShape(metadataHeaders(d, file)).reply(bytes) : jsonResponse({ error: `Metadata "${file}" not found` }, 404));
    // The device's signed view, as the route answers; at hand (no promise) on a poll of timestamp.json.
    const bytes = gw.tuf.metadata(file, deviceView(gw, d.uuid));
    return bytes instanceof Promise ? bytes.then(found) : found(bytes);
  });
  const wait = route("GET", "/repo/wait", (d, _req, env, _path, query) => {
    const q = new URLSearchParams(query);
    return waitForNews(gw, d.uuid, q.get("after") ?? undefined, q.get("timeout") ?? undefined, env.connection);
  });
  /** A device POST of a JSON body: read with the route's compiled reader, then `act` on the value. */
  const posted = <V>(label: string, read: JsonBodyReader<V>, act: (d: DeviceRow, value: V) => Promise<Answer>) =>
    route("POST", label, async (d, req) => {
      const r = req instanceof Request ? await read(req) : read.bytes(req.body);
      return "problem" in r ? jsonResponse({ error: r.problem.error }, r.problem.status) : act(d, r.value);
    });
  const events = posted("/events", readEventBatch, (d, batch) =>
    oneWriteAtATime(gw, d.uuid, "POST /events", async () => {
      const pastRate = eventsPastRate(gw, d.uuid, batch.length);
      if (pastRate) return pastRate;
      const stored = await gw.store.appendEvents(d.uuid, batch);
      return JSON_OK.reply(Buffer.from(JSON.stringify({ received: batch.length, stored })));
    }),
  );
  const appsStates = posted("/apps-states", readAppsStates, (d, states) =>
    oneWriteAtATime(gw, d.uuid, "POST /apps-states", async () => {
      await gw.store.putAppsStates(d.uuid, states);
      return NO_CONTENT.reply(null);
    }),
  );

  /** The device routes by method and exact path; under /repo/, a metadata file name (checked before any lookup). */
  const exact = { GET: new Map<string, DeviceRoute>(), POST: new Map<string, DeviceRoute>() };
  for (const r of [wait, events, appsStates]) exact[r.method].set(r.label, r);
  const routeOf = (method: string, path: string): DeviceRoute | undefined => {
    if (method !== "GET" && method !== "POST") return undefined;
    // A path that needs decoding goes to the app, which routes on the decoded path.
    if (path.includes("%")) return undefined;
    return exact[method].get(path) ?? (method === "GET" && path.startsWith("/repo/") && METADATA_FILE.test(path.slice(6)) ? metadata : undefined);
  };

  /** Answers with the route's handler: one sighting, one count, errors through the app's answer. */
  function answer(route: DeviceRoute, d: DeviceRow, req: DeviceRequest, env: Bindings, path: string, query: string): Answer | Promise<Answer> {
    noteCheckIn(gw.sightings, d, req.headers);
    let res: Answer | Promise<Answer>;
    try {
      res = route.handle(d, req, env, path, query);
    } catch (err) {
      return route.failed(err);
    }
    return res instanceof Promise ? res.then(route.counted, route.failed) : route.counted(res);
  }
  const respond = (a: Answer | Promise<Answer>) => (a instanceof Promise ? a.then(asResponse) : asResponse(a));

  return {
    fetch(req, env, ctx) {
      const peer = env?.peer;
      if (!peer) return app(req, env, ctx);
      const { path, query } = urlTarget(req.url);
      const route = routeOf(req.method, path);
      if (!route) return app(req, env, ctx);
      const cached = cachedDeviceInGoodStanding(gw.devices, peer);
      if (cached) return respond(answer(route, cached, req, env, path, query));
      // A lookup that fails (the database unreachable) is answered as the route's error: 503 with Retry-After.
      return checkDevice(gw.devices, peer).then(
        (r) => ("device" in r ? respond(answer(route, r.device, req, env, path, query)) : app(req, env, ctx)),
        (err: unknown) => asResponse(route.failed(err)),
      );
    },
    fetchHead(req, env) {
      const peer = env.peer;
      if (!peer) return undefined;
      const route = routeOf(req.method, req.path);
      // An empty POST body goes the Request's way, whose reader words that problem.
      if (!route || (route.method === "POST" && req.body.byteLength === 0)) return undefined;
      const cached = cachedDeviceInGoodStanding(gw.devices, peer);
      return cached ? answer(route, cached, req, env, req.path, req.query) : undefined;
    },
  };
}

/** The fast path's `fetch` alone (for callers with no transport: benchmarks of the routes). */
export const withDeviceFastPath = (gw: Gateway, app: Fetch, failed: ErrorAnswer): Fetch => deviceFastPath(gw, app, failed).fetch;
