/**
 * The check-in without the router: `GET /repo/<metadata>.json` and `POST /events` from a device
 * in good standing are answered here, before Hono's dispatch, middleware chain and context, which
 * cost more than the work itself. Same answers, same sightings, same metrics as the routes in
 * ./repo.ts and ./device-events.ts; anything else (no certificate, a refused device, a file name
 * the route would refuse, admin access to /repo/) goes to the app unchanged, so errors keep one
 * source.
 *
 * @module
 */
import type { Bindings, Gateway } from "../env.ts";
import { cachedDeviceInGoodStanding, checkDevice, noteCheckIn } from "../devices/auth.ts";
import type { DeviceRow } from "../store/types.ts";
import { readEventBatch } from "./device-events.ts";
import { deviceView, METADATA_FILE, METADATA_HEADERS } from "./repo.ts";

type Fetch = (req: Request, env?: Bindings, ctx?: any) => Response | Promise<Response>;
/** The app's error answer for what a handler threw (app.ts's onError). */
export type ErrorAnswer = (err: unknown, req: Request, path: string) => Response;

/** A JSON answer that says its length (the transport then writes it without a stream reader). */
export const jsonResponse = (body: unknown, status: number) => {
  const text = JSON.stringify(body);
  return new Response(text, { status, headers: { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)) } });
};

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
  const note = (d: DeviceRow, req: Request) => noteCheckIn(gw.sightings, d, (name) => req.headers.get(name) ?? undefined);

  async function metadata(req: Request, env: Bindings | undefined, file: string, ctx: any): Promise<Response> {
    const d = await device(req, env);
    if (!d) return app(req, env, ctx);
    note(d, req);
    let res: Response;
    try {
      const bytes = await gw.tuf.metadata(file, deviceView(gw, d.uuid)); // the device's signed view, as the route answers
      res = bytes
        ? new Response(bytes as Uint8Array<ArrayBuffer>, { status: 200, headers: { ...METADATA_HEADERS, "content-length": String(bytes.byteLength) } })
        : jsonResponse({ error: `Metadata "${file}" not found` }, 404);
    } catch (err) {
      res = failed(err, req, `/repo/${file}`);
    }
    gw.metrics.count("/repo/:file", res.status);
    return res;
  }

  async function events(req: Request, env: Bindings | undefined, ctx: any): Promise<Response> {
    const d = await device(req, env);
    if (!d) return app(req, env, ctx);
    note(d, req);
    let res: Response;
    try {
      const r = await readEventBatch(req);
      if ("problem" in r) res = jsonResponse({ error: r.problem.error }, r.problem.status);
      else {
        const stored = await gw.store.appendEvents(d.uuid, r.value);
        res = jsonResponse({ received: r.value.length, stored }, 200);
      }
    } catch (err) {
      res = failed(err, req, "/events");
    }
    gw.metrics.count("/events", res.status);
    return res;
  }

  return (req, env, ctx) => {
    const method = req.method;
    if (method !== "GET" && method !== "POST") return app(req, env, ctx);
    const path = pathOf(req.url);
    if (path === undefined) return app(req, env, ctx);
    if (method === "GET") {
      if (path.startsWith("/repo/") && METADATA_FILE.test(path.slice(6))) return metadata(req, env, path.slice(6), ctx);
    } else if (path === "/events") return events(req, env, ctx);
    return app(req, env, ctx);
  };
}
