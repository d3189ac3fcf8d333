/**
 * What the gateway tells its transport about a request before reading its
 * body (see TransportOptions.admit): whether the client proved who it is (a
 * certificate of a device in good standing, or a valid token), which earns
 * the longer deadlines, and whether the request is refused anyway, so an
 * unauthenticated client never gets to send a body the gateway would read:
 *
 * - a device endpoint without a certificate of a registered, unrevoked device;
 * - `/admin/...` without an `Authorization` header;
 * - `/v2/...` (the registry) with neither an `Authorization` header nor a device certificate;
 * - `POST /devices` (registration) without an `Authorization` header.
 *
 * A refused request still goes to the app (without its body), so the answer
 * is the app's own (401 with the registry's challenge, etc.).
 *
 * @module
 */
import { deviceInGoodStanding } from "./devices/auth.ts";
import type { DeviceCache } from "./devices/cache.ts";
import type { Bindings } from "./env.ts";
import { StoreUnavailableError, type DeviceRow } from "./store/types.ts";
import type { Admission, RequestInfo } from "./transport/index.ts";

const DEVICE_PATHS = new Set(["/events", "/apps-states", "/system_info", "/system_info/network", "/system_info/config", "/device"]);

const isDevicePath = (path: string) => DEVICE_PATHS.has(path) || path.startsWith("/repo/");
const under = (path: string, prefix: string) => path === prefix || path.startsWith(`${prefix}/`);

export interface AdmissionOptions {
  devices: DeviceCache;
  /** Whether an `Authorization` header holds a token the gateway accepts (admin, registry, ...). */
  tokenValid(authorization: string): boolean | Promise<boolean>;
}

export function createAdmission(opts: AdmissionOptions) {
  /** The verdict once the device is known; a token is checked only without a device. */
  const verdict = (req: RequestInfo, device: DeviceRow | undefined): Admission | Promise<Admission> => {
    const authorization = req.header("authorization");
    if (device !== undefined || authorization === undefined) return decide(req, device, authorization, device !== undefined);
    const valid = opts.tokenValid(authorization);
    return valid instanceof Promise ? valid.then((ok) => decide(req, device, authorization, ok)) : decide(req, device, authorization, valid);
  };
  // A check-in from a device in the cache is answered without a promise (the transport then goes on at once).
  return (req: RequestInfo, env: Bindings): Admission | Promise<Admission> => {
    const device = env.peer ? deviceInGoodStanding(opts.devices, env.peer) : undefined;
    // A lookup the store cannot answer (the database unreachable) decides nothing: the app answers
    // the request, 503 with Retry-After, and the store has said so in the log once.
    return device instanceof Promise ? device.then((d) => verdict(req, d), unknownDevice) : verdict(req, device);
  };
}

const NOT_AUTHENTICATED: Admission = Object.freeze({ authenticated: false });
const unknownDevice = (err: unknown): Admission => {
  if (err instanceof StoreUnavailableError) return NOT_AUTHENTICATED;
  throw err;
};

function decide(req: RequestInfo, device: DeviceRow | undefined, authorization: string | undefined, authenticated: boolean): Admission {
  const path = req.path;
  const refuse =
    (isDevicePath(path) && !device) ||
    (under(path, "/admin") && authorization === undefined) ||
    (under(path, "/v2") && authorization === undefined && !device) ||
    (path === "/devices" && req.method === "POST" && authorization === undefined);
  return { authenticated, refuse };
}
