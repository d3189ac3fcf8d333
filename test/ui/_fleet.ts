/**
 * A small fleet on a real gateway for the dashboard tests: devices registered through
 * POST /devices with a registration token (as fioup does), reporting an update that
 * succeeded on one and failed on another, with inventory and app states.
 */
import type { RegistrationResponse } from "../../lib/api/index.ts";
import { EMPTY_SHA256 } from "../../lib/api/target.ts";
import { post, tlsFetch } from "../gateway/_client.ts";
import { makeDeviceCsr } from "../gateway/_device.ts";
import type { TlsDevice } from "../gateway/_register.ts";
import type { GatewayHandle } from "../harness/gateway.ts";

/** POST /devices with a registration token, as `fioup register` does. */
export async function register(gw: GatewayHandle, token: string, name: string): Promise<TlsDevice> {
  const k = await makeDeviceCsr();
  const res = await tlsFetch({ ca: gw.caPem })(`${gw.url}/devices`, {
    ...post({ name, uuid: k.uuid, csr: k.csrPem, "hardware-id": "amd64-linux" }),
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
  });
  if (res.status !== 201) throw new Error(`Cannot register ${name}: ${res.status} ${await res.text()}`);
  const body = (await res.json()) as RegistrationResponse;
  return { uuid: k.uuid, cert: body.certificate, key: k.keyPem, fetch: tlsFetch({ ca: body.ca, cert: body.certificate, key: k.keyPem }) };
}

export const FETCH_ERROR = "Cannot fetch blob sha256:0badc0de: registry returned 404";

let seq = 0;
/** A device event of the update to amd64-linux-2, or of another target with `targetName`, `version` and `correlationId` in `event`. */
export const event = (type: string, event: Record<string, unknown>) => ({
  id: `e-${Date.now()}-${seq++}`,
  deviceTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
  eventType: { id: type, version: 2 },
  event: { correlationId: "upd-2", targetName: "amd64-linux-2", version: "2", ...event },
});

/** A device request with a JSON body; throws on an answer other than 2xx. */
export async function send(d: TlsDevice, url: string, path: string, body: unknown, method = "POST") {
  const res = await d.fetch(`${url}${path}`, { method, headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
}

export interface Fleet {
  good: TlsDevice;
  bad: TlsDevice;
  spare: TlsDevice;
}

/** Registers "kiosk-good" (updated to amd64-linux-2), "kiosk-bad" (its download failed) and "spare-1". */
export async function makeFleet(gw: GatewayHandle): Promise<Fleet> {
  const res = await gw.adminFetch("/admin/tokens", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "test fleet", maxUses: 10, tags: ["main"] }),
  });
  const { token } = (await res.json()) as { token: string };
  const entry = (version: string) => ({
    length: 0,
    hashes: { sha256: EMPTY_SHA256 },
    custom: { version, hardwareIds: ["amd64-linux"], tags: ["main"], docker_compose_apps: { shop: { uri: `${gw.host}/main/shop@sha256:${version.repeat(64)}` } } },
  });
  const published = await gw.adminFetch("/admin/targets", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ targets: { "amd64-linux-1": entry("1"), "amd64-linux-2": entry("2") } }),
  });
  if (!published.ok) throw new Error(`Cannot publish test targets: ${published.status} ${await published.text()}`);
  const good = await register(gw, token, "kiosk-good");
  const bad = await register(gw, token, "kiosk-bad");
  const spare = await register(gw, token, "spare-1");
  for (const [d, current] of [
    [good, "amd64-linux-2"],
    [bad, "amd64-linux-1"],
  ] as const) {
    const check = await d.fetch(`${gw.url}/repo/timestamp.json`, { headers: { "x-ats-target": current, "x-ats-dockerapps": "shop" } });
    if (!check.ok) throw new Error(`check-in: ${check.status}`);
    await send(d, gw.url, "/system_info", { product: "test board", memory: "2 GiB" }, "PUT");
    await send(d, gw.url, "/system_info/network", { hostname: `host-${d.uuid.slice(0, 4)}`, mac: "02:00:00:00:00:09", local_ipv4: "10.0.0.9" }, "PUT");
  }
  await send(good, gw.url, "/events", [
    event("EcuDownloadStarted", {}),
    event("EcuDownloadCompleted", { success: true, details: JSON.stringify({ bytesFetched: 5 * 1048576 }) }),
    event("EcuInstallationStarted", {}),
    event("EcuInstallationApplied", {}),
    event("EcuInstallationCompleted", { success: true }),
  ]);
  await send(good, gw.url, "/apps-states", {
    deviceTime: new Date().toISOString(),
    apps: { shop: { uri: "hub/main/shop@sha256:" + "a".repeat(64), state: "healthy", services: [{ name: "web", state: "running", health: "healthy" }] } },
  });
  await send(bad, gw.url, "/events", [event("EcuDownloadStarted", {}), event("EcuDownloadCompleted", { success: false, details: FETCH_ERROR })]);
  return { good, bad, spare };
}
