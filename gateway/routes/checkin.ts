/**
 * The check-in without the router: `GET /repo/<metadata>.json`, `POST /events` and `POST /apps-states` from a device
 * in good standing are answered here, before Hono's dispatch, middleware chain and context, which
 * cost more than the work itself. Same answers, same sightings, same metrics as the routes in
 * ./repo.ts, ./device-events.ts and ./device-apps-states.ts; anything else (no certificate, a refused device, a file name
 * the route would refuse, admin access to /repo/) goes to the app unchanged, so errors keep one
 * source.
 *
 * @module
 */
import type { Bindings, Gateway } from "../env.ts";
import { cachedDeviceInGoodStanding, checkDevice, noteCheckIn } from "../devices/auth.ts";
import type { DeviceRow } from "../store/types.ts";
import { readAppsStates } from "./device-apps-states.ts";
import { readEventBatch } from "./device-events.ts";
import { deviceView, METADATA_FILE, METADATA_HEADERS } from "./repo.ts";
import type { JsonBodyReader } from "./_validate.ts";

type Fetch = (req: Request, env?: Bindings, ctx?: any) => Response | Promise<Response>;
/** The app's error answer for what a handler threw (app.ts's onError). */
export type ErrorAnswer = (err: unknown, req: Request, path: string) => Response;

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

/** The path of a request URL (what Hono routes on), or undefined when it needs decoding. */
function pathOf(url: string): string | undefined {
  const start = url.indexOf("/", url.indexOf(":") + 3);
  if (start < 0) return undefined;
  const q = url.indexOf("?", start);
  const path = q < 0 ? url.slice(start) : url.slice(start, q);
  return path.includes("%") ? undefined : path;
}

/** Wraps the app's fetch with the check-in fast path. */
export function withCheckinFastPath(gw: Gateway, app: Fetch, failed: ErrorAnswer): Fetch {
  const device = async (req: Request, env: Bindings | undefined): Promise<DeviceRow | undefined> => {
    const peer = env?.peer;
    if (!peer) return undefined;
    const d = cachedDeviceInGoodStanding(gw.devices, peer);
    if (d) return d;
    const r = await checkDevice(gw.devices, peer);
    return "device" in r ? r.device : undefined;
  };
  const note = (d: DeviceRow, req: Request) => noteCheckIn(gw.sightings, d, req.headers);

  async function metadata(req: Request, env: Bindings | undefined, file: string, ctx: any): Promise<Response> {
    const d = await device(req, env);
    if (!d) return app(req, env, ctx);
    note(d, req);
    let res: Response;
    try {
      const bytes = await gw.tuf.metadata(file, deviceView(gw, d.uuid)); // the device's signed view, as the route answers
      res = bytes
        ? new Response(bytes as Uint8Array<ArrayBuffer>, metadataInit(bytes.byteLength))
        : jsonResponse({ error: `Metadata "${file}" not found` }, 404);
    } catch (err) {
      res = failed(err, req, `/repo/${file}`);
    }
    gw.metrics.count("/repo/:file", res.status);
    return res;
  }

  /** A device POST of a JSON body: read with the route's compiled reader, then `act` on the value. */
  const posted =
    <V>(route: string, read: JsonBodyReader<V>, act: (d: DeviceRow, value: V) => Promise<Response>) =>
    async (req: Request, env: Bindings | undefined, ctx: any): Promise<Response> => {
      const d = await device(req, env);
      if (!d) return app(req, env, ctx);
      note(d, req);
      let res: Response;
      try {
        const r = await read(req);
        res = "problem" in r ? jsonResponse({ error: r.problem.error }, r.problem.status) : await act(d, r.value);
      } catch (err) {
        res = failed(err, req, route);
      }
      gw.metrics.count(route, res.status);
      return res;
    };
  const events = posted("/events", readEventBatch, async (d, batch) => {
    const stored = await gw.store.appendEvents(d.uuid, batch);
    return jsonResponse({ received: batch.length, stored }, 200);
  });
  const appsStates = posted("/apps-states", readAppsStates, async (d, states) => {
    await gw.store.putAppsStates(d.uuid, states);
    return new Response(null, NO_CONTENT);
  });

  return (req, env, ctx) => {
    const method = req.method;
    if (method !== "GET" && method !== "POST") return app(req, env, ctx);
    const path = pathOf(req.url);
    if (path === undefined) return app(req, env, ctx);
    if (method === "GET") {
      if (path.startsWith("/repo/") && METADATA_FILE.test(path.slice(6))) return metadata(req, env, path.slice(6), ctx);
    } else if (path === "/events") return events(req, env, ctx);
    else if (path === "/apps-states") return appsStates(req, env, ctx);
    return app(req, env, ctx);
  };
}
