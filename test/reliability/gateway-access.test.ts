/**
 * The real gateway (`gateway serve`, its own process, real mTLS on 127.0.0.1)
 * against callers who should get nothing: every endpoint listed in its
 * /openapi.json (so new endpoints are covered without touching this file),
 * tried with no credentials, another CA's certificate, a revoked device's
 * certificate, another device's certificate, device credentials on admin
 * endpoints and registration tokens as admin tokens; then malformed, wrong
 * and oversized JSON bodies to every endpoint that takes one. Every attempt
 * is refused for the right reason: the status and error that credential
 * deserves on that kind of endpoint (expectedRefusal), not just any 401/403 or
 * a dropped connection; bad bodies get a 4xx with a JSON error; and nothing in
 * the gateway changes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { RegistrationResponse } from "../../lib/api/index.ts";
import { createCa, signDeviceCsr } from "../../gateway/pki/ca.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { makeDeviceCsr } from "../gateway/_device.ts";
import { Tally } from "./_tally.ts";

const tally = new Tally("access");
let gw: GatewayHandle;

interface Identity {
  name: string;
  uuid?: string;
  cert?: string;
  key?: string;
  headers?: Record<string, string>;
}
interface Endpoint {
  method: string;
  path: string;
  security: string[];
  hasBody: boolean;
}

let endpoints: Endpoint[] = [];
let devA: Identity;
let devB: Identity;
let revoked: Identity;
let foreign: Identity;

function call(id: Identity, method: string, path: string, body?: string | Uint8Array, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${gw.url}${path}`, {
    method,
    headers: { ...(body !== undefined ? { "content-type": "application/json" } : {}), ...id.headers, ...headers },
    body,
    tls: { ca: gw.caPem, ...(id.cert ? { cert: id.cert, key: id.key } : {}) },
  } as RequestInit);
}

async function register(name: string): Promise<Identity> {
  const k = await makeDeviceCsr();
  const res = await call({ name: "admin", headers: { authorization: `Bearer ${gw.adminToken}` } }, "POST", "/devices",
    JSON.stringify({ name, uuid: k.uuid, csr: k.csrPem, "hardware-id": "amd64-linux", tags: ["main"] }));
  if (res.status !== 201) throw new Error(`register ${name}: ${res.status} ${await res.text()}`);
  const body = (await res.json()) as RegistrationResponse;
  return { name, uuid: k.uuid, cert: body.certificate, key: k.keyPem };
}

/** A JSON view of the gateway's state that no refused request may change (clocks stripped). */
async function state(): Promise<unknown> {
  const strip = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(strip) : v && typeof v === "object"
      ? Object.fromEntries(Object.entries(v).filter(([k]) => !/seen|time|updatedAt|lastSeen/i.test(k)).map(([k, x]) => [k, strip(x)]))
      : v;
  const get = async (p: string) => strip(await (await gw.adminFetch(p)).json());
  return {
    devices: await get("/admin/devices"),
    targets: await get("/admin/targets"),
    tokens: await get("/admin/tokens"),
    a: await get(`/admin/devices/${devA.uuid}`),
    aUpdates: await get(`/admin/devices/${devA.uuid}/updates`),
    b: await get(`/admin/devices/${devB.uuid}`),
    bUpdates: await get(`/admin/devices/${devB.uuid}/updates`),
  };
}

const concrete = (path: string) =>
  path.replace("{uuid}", devB.uuid!).replace("{file}", "timestamp.json").replace("{name}", "amd64-linux-1").replace(/\{[^}]+\}/g, "x");

type Kind = "admin" | "device" | "repo" | "register" | "registry";
const kindOf = (path: string): Kind =>
  path.startsWith("/admin") ? "admin" : path === "/devices" ? "register" : path.startsWith("/v2") ? "registry" : path.startsWith("/repo/") ? "repo" : "device";

/** Each endpoint kind's refusal when no valid credential of its kind is presented. */
const MISSING: Record<Kind, [number, string]> = {
  admin: [401, "Token required: send Authorization: Bearer <token> (an admin, publish or viewer token)"],
  device: [401, "no verified client certificate"],
  // TUF metadata: a device certificate, or an API token (preload, gateway export).
  repo: [401, "no verified client certificate"],
  register: [401, "a registration token is required"],
  registry: [401, '"code":"UNAUTHORIZED"'],
};

/**
 * The refusal the gateway owes each credential on each kind of endpoint: status and a phrase of
 * the error. A certificate from another CA is no certificate at all; a revoked one is named as
 * revoked where devices are served (the registry too); a wrong token is refused (403) where tokens are checked.
 */
function expectedRefusal(kind: Kind, who: string): [number, string] {
  if (who === "revoked device certificate" && (kind === "device" || kind === "repo" || kind === "registry")) return [403, "Device revoked"];
  if (["a wrong admin token", "Basic auth with a wrong password"].includes(who) && kind === "admin") return [403, "Token refused"];
  if (who === "a registration token used as admin token" && kind === "admin") return [403, "Registration token refused: it only registers devices"];
  if (who === "a wrong admin token" && kind === "repo") return [403, "Token refused: unknown token"];
  if (who === "a registration token used as admin token" && kind === "repo") return [403, "refused: it only registers devices"];
  if (who === "a wrong admin token" && kind === "register") return [401, "unknown registration token"];
  return MISSING[kind];
}

/** A body that would be valid-looking for this endpoint, so a refusal is about the credentials. */
function plausibleBody(e: Endpoint): string | undefined {
  if (!e.hasBody) return e.method === "GET" ? undefined : "";
  const ev = { id: "ev-1", deviceTime: "2026-01-01T00:00:00Z", eventType: { id: "EcuDownloadStarted", version: 0 }, event: { correlationId: "c1" } };
  const bodies: Record<string, unknown> = {
    "/events": [ev],
    "/apps-states": { deviceTime: "t", apps: {} },
    "/system_info": { cpu: "x" },
    "/system_info/network": { hostname: "h", mac: "m", local_ipv4: "1.2.3.4" },
    "/system_info/config": { a: "b" },
    "/admin/tokens": { tags: ["main"] },
    "/admin/keys/rotate": { role: "timestamp" },
    "/admin/targets": { targets: {} },
  };
  return JSON.stringify(bodies[e.path] ?? {});
}

beforeAll(async () => {
  gw = await startGateway();
  const api = (await (await fetch(`${gw.url}/openapi.json`, { tls: { ca: gw.caPem } } as RequestInit)).json()) as {
    paths: Record<string, Record<string, { security?: Record<string, string[]>[]; requestBody?: unknown }>>;
  };
  for (const [path, ops] of Object.entries(api.paths))
    for (const [method, op] of Object.entries(ops))
      endpoints.push({ method: method.toUpperCase(), path, security: (op.security ?? []).flatMap((s) => Object.keys(s)), hasBody: !!op.requestBody });
  devA = await register("device-a");
  devB = await register("device-b");
  revoked = await register("device-revoked");
  const r = await gw.adminFetch(`/admin/devices/${revoked.uuid}/revoke`, { method: "POST" });
  if (!r.ok) throw new Error(`revoke: ${r.status}`);
  revoked.name = "revoked device certificate";
  const other = await createCa("main");
  const k = await makeDeviceCsr(devB.uuid);
  foreign = { name: "device B's uuid in a certificate from another CA", uuid: devB.uuid, cert: (await signDeviceCsr(other, k.csrPem, { uuid: devB.uuid!, factory: "main" })).certPem, key: k.keyPem };
}, 90_000);

afterAll(async () => {
  tally.print();
  await gw?.stop();
});

describe("gateway access control", () => {
  test("openapi.json lists the device and admin endpoints", () => {
    const names = endpoints.map((e) => `${e.method} ${e.path}`);
    for (const p of ["POST /events", "GET /device", "GET /repo/{file}", "GET /admin/devices", "POST /admin/targets", "POST /devices"]) expect(names).toContain(p);
    expect(endpoints.filter((e) => e.security.length > 0).length).toBeGreaterThanOrEqual(15);
  });

  test("every protected endpoint refuses no credentials, a foreign CA, a revoked device and the wrong kind of credential", async () => {
    const tokenRes = await gw.adminFetch("/admin/tokens", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ tags: ["main"] }) });
    const regToken = ((await tokenRes.json()) as { token: string }).token;
    const before = await state(); // after creating the token above, on purpose
    const anon: Identity = { name: "no credentials" };
    // The admin token with its first character changed (to "y" when it already is "x": random tokens start with "x" now and then).
    const wrongFirst = gw.adminToken.startsWith("x") ? "y" : "x";
    const badAdmin: Identity = { name: "a wrong admin token", headers: { authorization: `Bearer ${wrongFirst}${gw.adminToken.slice(1)}` } };
    const regAsAdmin: Identity = { name: "a registration token used as admin token", headers: { authorization: `Bearer ${regToken}` } };
    const basicWrong: Identity = { name: "Basic auth with a wrong password", headers: { authorization: "Basic " + btoa("admin:nope") } };
    const deviceOnAdmin: Identity = { ...devA, name: "device A's certificate on an admin endpoint" };
    const deviceOnRegister: Identity = { ...devA, name: "device A's certificate (no token) on registration" };
    let tried = 0;
    const protectedEps = [...endpoints.filter((e) => e.security.length > 0), { method: "GET", path: "/v2/", security: ["registry"], hasBody: false }, { method: "GET", path: "/v2/main/app/tags/list", security: ["registry"], hasBody: false }];
    for (const e of protectedEps) {
      const who: Identity[] = [anon, foreign, revoked, badAdmin, basicWrong];
      if (e.path.startsWith("/admin")) who.push(deviceOnAdmin, regAsAdmin);
      if (e.path.startsWith("/repo/")) who.push(regAsAdmin);
      if (e.path === "/devices") who.push(deviceOnRegister);
      for (const id of who) {
        const res = await call(id, e.method, concrete(e.path), plausibleBody(e));
        const text = await res.text();
        tried++;
        const [status, phrase] = expectedRefusal(kindOf(e.path), id.name);
        const ok = res.status === status && text.includes(phrase);
        tally.record(`${e.method} ${e.path} with ${id.name}`, ok ? "refused" : "failed", `HTTP ${res.status} ${text.slice(0, 120)}`, {
          reason: id.name,
          endpoint: kindOf(e.path),
          got: `${res.status} ${ok ? phrase : text.slice(0, 60)}`,
          expected: `${status} ${phrase}`,
        });
        expect(`${e.method} ${e.path} ${id.name}: ${res.status} ${ok ? phrase : text}`).toBe(`${e.method} ${e.path} ${id.name}: ${status} ${phrase}`);
      }
    }
    expect(tried).toBeGreaterThan(80);
    expect(await state()).toEqual(before);
  });

  test("device A cannot read or write as device B", async () => {
    const before = await state();
    const asB = { "x-client-cert": encodeURIComponent(devB.cert!) }; // header honoured only from trusted proxies: none here
    const me = await call(devA, "GET", "/device", undefined, asB);
    expect(me.status).toBe(200);
    const uuid = ((await me.json()) as { uuid: string }).uuid;
    tally.record("GET /device as A with B's certificate in x-client-cert", uuid === devA.uuid ? "refused" : "failed", `answered for ${uuid === devA.uuid ? "A" : "B"}`);
    expect(uuid).toBe(devA.uuid!);
    const ev = [{ id: "a-as-b", deviceTime: "t", eventType: { id: "EcuDownloadStarted", version: 0 }, event: { correlationId: "a-as-b", targetName: "x" } }];
    const posted = await call(devA, "POST", "/events", JSON.stringify(ev), asB);
    expect(posted.status).toBeLessThan(300);
    const bUpdates = JSON.stringify(await (await gw.adminFetch(`/admin/devices/${devB.uuid}/updates`)).json());
    tally.record("POST /events as A with B's certificate in x-client-cert", bUpdates.includes("a-as-b") ? "failed" : "refused", "event landed on A, not B");
    expect(bUpdates).not.toContain("a-as-b");
    for (const e of endpoints.filter((x) => x.path.includes("{uuid}"))) {
      const res = await call(devA, e.method, concrete(e.path), plausibleBody(e));
      tally.record(`${e.method} ${concrete(e.path).replace(devB.uuid!, "<B>")} with A's certificate`, res.status === 401 || res.status === 403 ? "refused" : "failed", `HTTP ${res.status}`);
      expect([401, 403]).toContain(res.status);
    }
    const after = (await state()) as Record<string, unknown>;
    const b = before as Record<string, unknown>;
    expect([after.b, after.bUpdates, after.targets, after.devices]).toEqual([b.b, b.bUpdates, b.targets, b.devices]);
  });

  test("malformed, mistyped and oversized JSON bodies to every endpoint that takes one are refused with 4xx", async () => {
    const before = await state();
    const adminId: Identity = { name: "admin", headers: { authorization: `Bearer ${gw.adminToken}` } };
    const huge = `{"x":"${"a".repeat(9 << 20)}"}`;
    const bodies: [string, string | Uint8Array][] = [
      ["truncated JSON", '{"a": [1, 2'],
      ["not JSON", "hello"],
      ["empty body", ""],
      ["a JSON number", "12345"],
      ["an array of numbers", "[1, 2]"],
      ["nested 100k deep", "[".repeat(100_000) + "]".repeat(100_000)],
      ["9 MiB", huge],
    ];
    for (const e of endpoints.filter((x) => x.hasBody)) {
      const id = e.path.startsWith("/admin") || e.path === "/devices" ? adminId : devA;
      for (const [what, body] of bodies) {
        const res = await call(id, e.method, concrete(e.path), body).catch((err: Error) => err);
        if (res instanceof Error) {
          // The server may cut the connection on a huge body; that is a refusal too.
          tally.record(`${e.method} ${e.path} with ${what}`, "refused", `connection closed: ${res.message}`);
          continue;
        }
        const text = await res.text();
        let error: unknown;
        try {
          error = (JSON.parse(text) as { error?: unknown }).error;
        } catch {}
        const ok = res.status >= 400 && res.status < 500 && typeof error === "string";
        tally.record(`${e.method} ${e.path} with ${what}`, ok ? "refused" : "failed", `HTTP ${res.status} ${text.slice(0, 160)}`);
        expect(`${e.method} ${e.path} ${what}: ${ok}`).toBe(`${e.method} ${e.path} ${what}: true`);
      }
    }
    expect((await fetch(`${gw.url}/healthz`, { tls: { ca: gw.caPem } } as RequestInit)).status).toBe(200);
    expect(await state()).toEqual(before);
  });
});
