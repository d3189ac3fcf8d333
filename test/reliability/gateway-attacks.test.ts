/**
 * The attacks an attacker's probe found against `gateway serve`, each tried again against the
 * real gateway over real TLS and recorded in the reliability table with the reason it was
 * refused: slow clients, deep JSON on device and admin endpoints, scoped tokens past their role,
 * registration tokens past their use limit, look-alike uuids, tags from a header, unsafe target
 * entries, absurd lifetimes, new metric labels from raw paths, registry tokens outliving a
 * revocation, and a symlink chain in a bundle. Each case fails if the gateway accepts the attack.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect } from "node:tls";
import { join } from "node:path";
import type { RegistrationResponse } from "../../lib/api/index.ts";
import { EMPTY_SHA256 } from "../../lib/api/target.ts";
import { extractBundle, UnsafeBundleError } from "../../lib/compose/extract.ts";
import { tgz } from "../fixtures/tar-builders.ts";
import { makeDeviceCsr } from "../gateway/_device.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { tempDir } from "../harness/tmp.ts";
import { Tally } from "./_tally.ts";

const tally = new Tally("attacks");
let gw: GatewayHandle;
let device: { uuid: string; cert: string; key: string };

const json = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
const asDevice = (path: string, init: RequestInit = {}) =>
  fetch(`${gw.url}${path}`, { ...init, tls: { ca: gw.caPem, cert: device.cert, key: device.key } } as RequestInit);
const deep = (n: number) => "[".repeat(n) + "]".repeat(n);

/** Records a refusal when `res` has `status` (and `reason` in its body); fails the test otherwise. */
async function refused(name: string, res: Response, status: number, reason: string | RegExp) {
  const text = await res.text();
  const ok = res.status === status && (typeof reason === "string" ? text.includes(reason) : reason.test(text));
  tally.record(name, ok ? "refused" : "failed", `HTTP ${res.status} ${text.slice(0, 160)}`);
  expect(res.status, text).toBe(status);
  expect(ok, text).toBe(true);
}

async function registrationToken(body: Record<string, unknown> = {}): Promise<string> {
  const res = await gw.adminFetch("/admin/tokens", json({ tags: ["main"], ...body }));
  return ((await res.json()) as { token: string }).token;
}

async function register(token: string, uuid: string) {
  const k = await makeDeviceCsr(uuid);
  return fetch(`${gw.url}/devices`, {
    ...json({ name: "d", uuid, csr: k.csrPem, "hardware-id": "amd64-linux" }),
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    tls: { ca: gw.caPem },
  } as RequestInit).then(async (res) => ({ res, key: k.keyPem }));
}

beforeAll(async () => {
  gw = await startGateway({ args: ["--head-timeout", "2", "--body-timeout", "3"] });
  const uuid = crypto.randomUUID();
  const { res, key } = await register(await registrationToken(), uuid);
  expect(res.status).toBe(201);
  device = { uuid, key, cert: ((await res.json()) as RegistrationResponse).certificate };
}, 120_000);

afterAll(async () => {
  tally.print();
  await gw?.stop();
}, 60_000);

describe("connections and bodies", () => {
  test("a client without credentials that sends one byte and stalls is closed at the head deadline", async () => {
    const t0 = Date.now();
    const closedAfter = await new Promise<number>((resolve) => {
      const s = connect({ host: "127.0.0.1", port: gw.port, ca: gw.caPem });
      s.on("secureConnect", () => s.write("G"));
      s.on("data", () => {});
      s.on("close", () => resolve(Date.now() - t0));
      s.on("error", () => {});
      setTimeout(() => resolve(Infinity), 20_000).unref();
    });
    const ok = closedAfter < 6000;
    tally.record("slow client: one byte, then nothing (no certificate)", ok ? "refused" : "failed", `closed after ${closedAfter} ms (head deadline 2 s)`);
    expect(ok).toBe(true);
  });

  test("100,000-deep JSON on device endpoints is refused before parsing; the device's next events are stored", async () => {
    for (const [method, path] of [["POST", "/events"], ["POST", "/apps-states"], ["PUT", "/system_info"], ["PUT", "/system_info/config"]] as const) {
      const t0 = performance.now();
      const res = await asDevice(path, { method, headers: { "content-type": "application/json" }, body: deep(100_000) });
      await refused(`100,000-deep JSON on ${method} ${path} (${(performance.now() - t0).toFixed(0)} ms)`, res, 400, "nested deeper than");
    }
    const ok = await asDevice("/events", json([{ id: crypto.randomUUID(), deviceTime: new Date().toISOString(), eventType: { id: "EcuDownloadStarted", version: 2 }, event: { correlationId: "c", targetName: "t", version: "1" } }]));
    expect(ok.status).toBe(200);
  });

  test("deep JSON on the admin API is refused too", async () => {
    await refused("100,000-deep JSON on POST /admin/targets", await gw.adminFetch("/admin/targets", { method: "POST", headers: { "content-type": "application/json" }, body: deep(100_000) }), 400, "nested deeper than");
  });
});

describe("tokens and identity", () => {
  test("a publish token cannot list devices, create tokens or rotate keys", async () => {
    const res = await gw.adminFetch("/admin/tokens", json({ role: "publish" }));
    const { token } = (await res.json()) as { token: string };
    const as = (path: string, init: RequestInit = {}) => gw.adminFetch(path, { ...init, headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${token}` } });
    await refused("publish token: GET /admin/devices", await as("/admin/devices"), 403, /publish/i);
    await refused("publish token: POST /admin/tokens", await as("/admin/tokens", json({})), 403, /publish/i);
    await refused("publish token: POST /admin/keys/rotate", await as("/admin/keys/rotate", json({ role: "timestamp" })), 403, /./);
  });

  test("no token rotates the root key, not even the admin token", async () => {
    await refused("admin token: rotate root", await gw.adminFetch("/admin/keys/rotate", json({ role: "root" })), 403, /root/i);
  });

  test("a registration token with max uses 1 registers one device and refuses the second", async () => {
    const token = await registrationToken({ maxUses: 1 });
    expect((await register(token, crypto.randomUUID())).res.status).toBe(201);
    const second = await register(token, crypto.randomUUID());
    await refused("registration token used a second time (max uses 1)", second.res, 401, /./);
  });

  test("malformed and look-alike uuids are refused", async () => {
    const token = await registrationToken({ maxUses: 5 });
    await refused('uuid "--------"', (await register(token, "--------")).res, 400, /uuid/i);
    await refused("upper-case look-alike of a registered uuid", (await register(token, device.uuid.toUpperCase())).res, 400, /uuid/i);
  });

  test("x-ats-tags cannot change the tags the token gave", async () => {
    await asDevice("/repo/timestamp.json", { headers: { "x-ats-tags": "production,evil" } });
    await Bun.sleep(1500); // check-ins are written once a second
    const row = (await (await gw.adminFetch(`/admin/devices/${device.uuid}`)).json()) as { tags: string[] };
    const ok = JSON.stringify(row.tags) === JSON.stringify(["main"]);
    tally.record("x-ats-tags: production,evil from the device", ok ? "refused" : "failed", `tags stay ${JSON.stringify(row.tags)}`);
    expect(row.tags).toEqual(["main"]);
  });

  test("a registry token dies with its device's revocation", async () => {
    const tok = await asDevice("/token?scope=repository:main/app:pull&service=gateway");
    const { token } = (await tok.json()) as { token: string };
    const other = crypto.randomUUID();
    const reg = await register(await registrationToken(), other);
    const cert = ((await reg.res.json()) as RegistrationResponse).certificate;
    const t2 = await fetch(`${gw.url}/token?scope=repository:main/app:pull&service=gateway`, { tls: { ca: gw.caPem, cert, key: reg.key } } as RequestInit);
    const { token: token2 } = (await t2.json()) as { token: string };
    expect((await gw.adminFetch(`/admin/devices/${other}/revoke`, { method: "POST" })).status).toBeLessThan(300);
    const res = await fetch(`${gw.url}/v2/main/app/tags/list`, { headers: { authorization: `Bearer ${token2}` }, tls: { ca: gw.caPem } } as RequestInit);
    await refused("registry token of a device revoked after it was minted", res, 401, /./);
  });

  test("absurd token lifetimes are refused, not a 500", async () => {
    await refused("expiresIn 1e300", await gw.adminFetch("/admin/tokens", json({ expiresIn: 1e300 })), 400, /./);
  });
});

describe("targets, metrics and bundles", () => {
  const entry = (over: Record<string, unknown> = {}, custom: Record<string, unknown> = {}) => ({
    length: 0,
    hashes: { sha256: EMPTY_SHA256 },
    ...over,
    custom: { version: "9", hardwareIds: ["amd64-linux"], tags: ["main"], docker_compose_apps: { web: { uri: `${gw.host}/main/web@sha256:${"a".repeat(64)}` } }, ...custom },
  });
  test("unsafe target entries are refused", async () => {
    await refused("target with length 1e300", await gw.adminFetch("/admin/targets", json({ targets: { "amd64-linux-9": entry({ length: 1e300 }) } })), 400, /./);
    await refused("target with empty hashes", await gw.adminFetch("/admin/targets", json({ targets: { "amd64-linux-9": entry({ hashes: {} }) } })), 400, /./);
    await refused(
      "target with an app URI not pinned by digest",
      await gw.adminFetch("/admin/targets", json({ targets: { "amd64-linux-9": entry({}, { docker_compose_apps: { web: { uri: `${gw.host}/main/web:latest` } } }) } })),
      400,
      /sha256|pinned|digest/i,
    );
  });

  test("unknown paths do not create metric labels", async () => {
    const labels = async () => (await (await fetch(`${gw.url}/metrics`, { tls: { ca: gw.caPem } } as RequestInit)).text()).split("\n").filter((l) => l.startsWith("gateway_requests_total")).length;
    const before = await labels();
    for (let i = 0; i < 50; i++) await gw.adminFetch(`/admin/keys/x${i}-${crypto.randomUUID()}`);
    const after = await labels();
    const ok = after - before <= 2;
    tally.record("50 unknown paths under /admin/keys/", ok ? "refused" : "failed", `metric series ${before} -> ${after}`);
    expect(ok).toBe(true);
  });

  test("a symlink chain that resolves outside the app dir is refused", async () => {
    const dir = await tempDir("attack-bundle-");
    const bundle = join(dir, "b.tgz");
    await Bun.write(bundle, await tgz([
      { name: "a/b/c/up", type: "symlink", linkname: "../../.." },
      { name: "esc", type: "symlink", linkname: "a/b/c/up/../../../../etc" },
    ]));
    await tally.refuses("bundle symlink chain a/b/c/up -> ../../.. then esc -> a/b/c/up/../../../../etc", UnsafeBundleError, () =>
      extractBundle({ bundle, index: {}, dest: join(dir, "app") }),
    );
  });
});
