/**
 * Scoped tokens, registration limits, device identity and tags, over real TLS
 * against an in-process `gateway serve` (sqlite in its data dir).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DeviceRow, TokenCreated, TokenRequest } from "../../lib/api/admin.ts";
import type { RegistrationResponse } from "../../lib/api/index.ts";
import { startGatewayServer, type RunningGateway } from "../../gateway/gateway.ts";
import { post, tlsFetch } from "./_client.ts";
import { makeDeviceCsr } from "./_device.ts";
import { commands } from "../../gateway/commands/index.ts";
import { exitCodeFor } from "../../gateway/exit-codes.ts";
import { runCliCaptured } from "../harness/cli.ts";

let gw: RunningGateway;
let dir: string;
let ca: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "gw-tokens-"));
  gw = await startGatewayServer({ dataDir: dir, listen: "127.0.0.1:0", log: () => {} });
  ca = gw.data.ca.certPem;
}, 120_000);

afterAll(async () => {
  await gw?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
}, 120_000);

/** A request with `token` as the Bearer credential, trusting only the gateway CA (no client certificate). */
const as = (token: string) => (path: string, init: RequestInit = {}) =>
  tlsFetch({ ca })(`${gw.url}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...(init.headers as Record<string, string>) },
  });
const admin = (path: string, init?: RequestInit) => as(gw.data.adminToken)(path, init);

async function createToken(req: TokenRequest): Promise<TokenCreated> {
  const res = await admin("/admin/tokens", post(req));
  expect(res.status).toBe(201);
  return (await res.json()) as TokenCreated;
}

/** Registers a new device key with `token`; resolves to the response (not thrown on refusal). */
async function register(token: string, over: Record<string, unknown> = {}) {
  const key = await makeDeviceCsr(typeof over.uuid === "string" ? over.uuid : undefined);
  const res = await as(token)("/devices", post({ name: "dev", uuid: key.uuid, csr: key.csrPem, "hardware-id": "amd64-linux", ...over }));
  return { res, key };
}

const entry = {
  length: 0,
  hashes: { sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
  custom: { version: "1", hardwareIds: ["amd64-linux"], tags: ["main"], docker_compose_apps: { httpd: { uri: `127.0.0.1:1/main/httpd@sha256:${"b".repeat(64)}` } } },
};

describe("scoped tokens", () => {
  test("a publish token reads and adds targets, and can do nothing else under /admin", async () => {
    const pub = await createToken({ role: "publish", name: "ci" });
    const api = as(pub.token);
    expect((await api("/admin/targets")).status).toBe(200);
    expect((await api("/admin/targets", post({ targets: { "amd64-linux-1": entry } }))).status).toBe(200);
    // A new target with a tag or hardware id no device can have would be offered to nobody: refused, nothing signed.
    for (const [custom, why] of [
      [{ tags: ["main", "eu/west"] }, 'custom.tags[1]: expected a tag (letters, digits, . _ -; at most 128, starting with a letter or digit), got "eu/west"'],
      [{ hardwareIds: ["raspberry pi"] }, 'custom.hardwareIds[0]: expected a hardware id'],
    ] as const) {
      const odd = await api("/admin/targets", post({ targets: { "amd64-linux-2": { ...entry, custom: { ...entry.custom, version: "2", ...custom } } } }));
      expect({ status: odd.status, body: await odd.json() }).toEqual({ status: 400, body: { error: expect.stringContaining(`Invalid target "amd64-linux-2": ${why}`) } });
    }
    expect(Object.keys(((await (await api("/admin/targets")).json()) as { targets: object }).targets)).toEqual(["amd64-linux-1"]);
    expect((await api("/admin/devices")).status).toBe(403);
    expect((await api("/admin/keys/rotate", post({ role: "targets" }))).status).toBe(403);
    expect((await api("/admin/keys/rotate", post({ role: "root" }))).status).toBe(403);
    expect((await api("/admin/tokens")).status).toBe(403);
    expect((await api("/admin/tokens", post({ role: "admin" }))).status).toBe(403);
    expect((await api("/admin/targets/amd64-linux-1", { method: "DELETE" })).status).toBe(403);
    expect((await register(pub.token)).res.status).toBe(403);
  }, 60_000);

  test("an admin token manages devices and tokens; revoking it refuses it at once", async () => {
    const adm = await createToken({ role: "admin" });
    expect((await as(adm.token)("/admin/devices")).status).toBe(200);
    const made = await as(adm.token)("/admin/tokens", post({ role: "publish" }));
    expect(made.status).toBe(201);
    expect((await admin(`/admin/tokens/${adm.id}/revoke`, { method: "POST" })).status).toBe(200);
    expect((await as(adm.token)("/admin/devices")).status).toBe(403);
    expect((await admin("/admin/tokens/no-such-id/revoke", { method: "POST" })).status).toBe(404);
  }, 60_000);

  test("a publish token pushes only the factory's repositories; its registry token dies with it", async () => {
    const pub = await createToken({ role: "publish" });
    const basic = `Basic ${Buffer.from(`ci:${pub.token}`).toString("base64")}`;
    const tok = await tlsFetch({ ca })(`${gw.url}/token?scope=repository:main/app:push,pull&scope=repository:other/app:push`, { headers: { authorization: basic } });
    expect(tok.status).toBe(200);
    const { token, access } = (await tok.json()) as { token: string; access?: unknown };
    void access;
    const claims = JSON.parse(Buffer.from(token.split(".")[0]!, "base64url").toString()) as { access: { name: string; actions: string[] }[] };
    expect(claims.access).toEqual([
      { type: "repository", name: "main/app", actions: ["push", "pull"] },
      { type: "repository", name: "other/app", actions: [] },
    ] as never);
    const upload = () => tlsFetch({ ca })(`${gw.url}/v2/main/app/blobs/uploads/`, { method: "POST", headers: { authorization: `Bearer ${token}` } });
    expect((await upload()).status).toBe(202);
    expect((await admin(`/admin/tokens/${pub.id}/revoke`, { method: "POST" })).status).toBe(200);
    expect((await upload()).status).toBe(401);
    expect((await as(pub.token)("/admin/targets")).status).toBe(403);
  }, 60_000);

  test("a huge expiresIn answers 400, not 500", async () => {
    for (const expiresIn of ["999999999w", 1e300, 3_153_600_001]) {
      const res = await admin("/admin/tokens", post({ expiresIn }));
      expect(res.status).toBe(400);
    }
  }, 60_000);
});

describe("registration tokens", () => {
  test("a token with max uses 1 registers one device and refuses the second", async () => {
    const t = await createToken({ maxUses: 1, tags: ["prod"] });
    expect((await register(t.token)).res.status).toBe(201);
    const second = await register(t.token);
    expect(second.res.status).toBe(401);
    expect(((await second.res.json()) as { error: string }).error).toMatch(/used/);
    // `gateway tokens list` says so: it showed the spent token as active.
    const open = await createToken({ maxUses: 2 });
    expect((await register(open.token)).res.status).toBe(201);
    const cli = { name: "gateway", version: "0", summary: "", commands, exitCodeFor };
    const listed = await runCliCaptured(cli, ["tokens", "list", "--server", gw.url, "--token", gw.data.adminToken]);
    expect([listed.code, listed.err]).toEqual([0, ""]);
    const row = (id: string) => listed.out.split("\n").find((l) => l.startsWith(`${id} `))?.trim();
    expect(row(t.id)).toMatch(/ 1\/1 +\S+ +used up$/);
    expect(row(open.id)).toMatch(/ 1\/2 +\S+ +active$/);
  }, 60_000);

  test("concurrent registrations on a one-use token: exactly one wins", async () => {
    const t = await createToken({});
    const results = await Promise.all(Array.from({ length: 6 }, () => register(t.token)));
    const codes = results.map((r) => r.res.status).sort();
    expect(codes).toEqual([201, 401, 401, 401, 401, 401]);
    const list = (await (await admin("/admin/tokens")).json()) as { tokens: { id: string; uses: number }[] };
    expect(list.tokens.find((x) => x.id === t.id)!.uses).toBe(1);
  }, 60_000);

  test("'--------' and an upper-case look-alike of a registered uuid are refused, even with the admin token", async () => {
    const t = await createToken({ maxUses: 5 });
    const first = await register(t.token);
    expect(first.res.status).toBe(201);
    for (const uuid of ["--------", first.key.uuid.toUpperCase(), first.key.uuid.replaceAll("-", "")]) {
      const key = await makeDeviceCsr(uuid);
      for (const token of [t.token, gw.data.adminToken]) {
        const res = await as(token)("/devices", post({ name: "x", uuid, csr: key.csrPem, "hardware-id": "amd64-linux" }));
        expect({ status: res.status, body: await res.json() }).toEqual({ status: 400, body: { error: expect.stringContaining(`uuid: expected a lower-case RFC 4122 uuid (8-4-4-4-12 hex digits with dashes), got "${uuid}"`) } });
      }
    }
    expect(((await (await admin("/admin/devices")).json()) as { devices: DeviceRow[] }).devices.filter((d) => d.uuid.toLowerCase() === first.key.uuid)).toHaveLength(1);
  }, 60_000);

  test("x-ats-tags cannot change a device's tags; the admin can, and so can a device whose token allows it", async () => {
    const fixed = await createToken({ tags: ["prod"] });
    const reg = await register(fixed.token, { tags: ["beta"] });
    expect(reg.res.status).toBe(201);
    const body = (await reg.res.json()) as RegistrationResponse;
    expect(body.config).toContain('tags = "prod"');
    const device = tlsFetch({ ca, cert: body.certificate, key: reg.key.keyPem });
    const uuid = reg.key.uuid;
    const checkIn = (tags: string) => device(`${gw.url}/repo/timestamp.json`, { headers: { "x-ats-tags": tags, "x-ats-target": "amd64-linux-1" } });
    expect((await checkIn("evil,beta")).status).toBe(200);
    const shown = async () => (await (await admin(`/admin/devices/${uuid}`)).json()) as DeviceRow; // flushes check-ins first
    expect(await shown()).toMatchObject({ tags: ["prod"], tagsFromDevice: false, currentTarget: "amd64-linux-1" });

    const set = await admin(`/admin/devices/${uuid}/tags`, post({ tags: ["qa", "prod"] }, "PUT"));
    expect(set.status).toBe(200);
    expect((await set.json()) as DeviceRow).toMatchObject({ uuid, tags: ["qa", "prod"] });
    await checkIn("evil");
    expect((await shown()).tags).toEqual(["qa", "prod"]);
    // A tag given twice is one tag, where first given.
    expect((await (await admin(`/admin/devices/${uuid}/tags`, post({ tags: ["qa", "prod", "qa"] }, "PUT"))).json()) as DeviceRow).toMatchObject({ tags: ["qa", "prod"] });
    expect((await admin(`/admin/devices/${crypto.randomUUID()}/tags`, post({ tags: ["x"] }, "PUT"))).status).toBe(404);
    expect((await admin(`/admin/devices/${uuid}/tags`, post({ tags: ["a,b"] }, "PUT"))).status).toBe(400);

    const open = await createToken({ allowDeviceTags: true, maxUses: 10 });
    // A tag given twice is one tag: in a token's tags, and in a device's own.
    const twice = await createToken({ tags: ["prod", "prod"] });
    expect(((await (await admin("/admin/tokens")).json()) as { tokens: { id: string; tags: string[] }[] }).tokens.find((x) => x.id === twice.id)!.tags).toEqual(["prod"]);
    const doubled = await register(open.token, { tags: ["beta", "beta"] });
    expect(((await (await admin(`/admin/devices/${doubled.key.uuid}`)).json()) as DeviceRow).tags).toEqual(["beta"]);
    const chooser = await register(open.token, { tags: ["beta"] });
    expect(chooser.res.status).toBe(201);
    const cb = (await chooser.res.json()) as RegistrationResponse;
    const dev2 = tlsFetch({ ca, cert: cb.certificate, key: chooser.key.keyPem });
    expect((await (await admin(`/admin/devices/${chooser.key.uuid}`)).json()) as DeviceRow).toMatchObject({ tags: ["beta"], tagsFromDevice: true });
    // Only what a target can carry: a made-up tag in the header is dropped, the others kept.
    await dev2(`${gw.url}/repo/timestamp.json`, { headers: { "x-ats-tags": "devel,eu/west,a;b" } });
    expect(((await (await admin(`/admin/devices/${chooser.key.uuid}`)).json()) as DeviceRow).tags).toEqual(["devel"]);
    // A tag no target can carry is refused at registration, as by `gateway devices tag`: the device would never update.
    const odd = await register(open.token, { tags: ["beta", "eu/west"] });
    expect({ status: odd.res.status, body: await odd.res.json() }).toEqual({ status: 400, body: { error: expect.stringContaining('tags[1]: expected a tag (letters, digits, . _ -; at most 128, starting with a letter or digit), got "eu/west"') } });
    expect((await admin(`/admin/devices/${uuid}/tags`, post({ tags: ["eu/west"] }, "PUT"))).status).toBe(400);
    // Tags a token overrides do not count, so they refuse nothing (an older fioup may send any).
    const prodOnly = await createToken({ tags: ["prod"] });
    const overridden = await register(prodOnly.token, { tags: ["eu/west"] });
    expect(overridden.res.status).toBe(201);
    expect(((await (await admin(`/admin/devices/${overridden.key.uuid}`)).json()) as DeviceRow).tags).toEqual(["prod"]);
    const hwid = await register(open.token, { "hardware-id": "raspberry pi" });
    expect({ status: hwid.res.status, body: await hwid.res.json() }).toEqual({ status: 400, body: { error: expect.stringContaining('hardware-id: expected a hardware id') } });
  }, 60_000);

  test("a device's registry token dies when the device is revoked", async () => {
    const reg = await register(gw.data.adminToken);
    const body = (await reg.res.json()) as RegistrationResponse;
    const device = tlsFetch({ ca, cert: body.certificate, key: reg.key.keyPem });
    const tok = await device(`${gw.url}/token?scope=repository:main/app:pull`);
    expect(tok.status).toBe(200);
    const { token } = (await tok.json()) as { token: string };
    // Without a client certificate: only the bearer token speaks for the device.
    const tags = () => tlsFetch({ ca })(`${gw.url}/v2/main/app/tags/list`, { headers: { authorization: `Bearer ${token}` } });
    expect((await tags()).status).not.toBe(401);
    expect((await admin(`/admin/devices/${reg.key.uuid}/revoke`, { method: "POST" })).status).toBe(200);
    expect((await tags()).status).toBe(401);
  }, 60_000);

  test("a revoked registration token registers nothing", async () => {
    const t = await createToken({ maxUses: 10 });
    expect((await admin(`/admin/tokens/${t.id}/revoke`, { method: "POST" })).status).toBe(200);
    const r = await register(t.token);
    expect(r.res.status).toBe(401);
    expect(((await r.res.json()) as { error: string }).error).toMatch(/revoked/);
  }, 60_000);
});
