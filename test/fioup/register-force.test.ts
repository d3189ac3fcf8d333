/**
 * `fioup register --force` on a registered device supersedes its identity: the same uuid, a new
 * key and certificate, the old certificate refused at once (403) and one device on the gateway,
 * its labels and tags kept. A registration token alone cannot take over a registered uuid, so a
 * copy of the device's files made before, whose certificate is superseded, gets a new uuid and is
 * told which one it could not keep. Real fioup CLI against a real gateway, without Docker.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { cpSync, existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { tempDir } from "../harness/tmp.ts";
import { makeDeviceCsr } from "../gateway/_device.ts";
import { post, tlsFetch } from "../gateway/_client.ts";
import type { DeviceRow } from "../../lib/api/admin.ts";

const FIOUP = join(import.meta.dir, "../../fioup/main.ts");
const GATEWAY = join(import.meta.dir, "../../gateway/main.ts");
let gw: GatewayHandle;
let token: string;

beforeAll(async () => {
  gw = await startGateway();
  const res = await gw.adminFetch("/admin/tokens", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ maxUses: 20, tags: ["main"] }) });
  token = ((await res.json()) as { token: string }).token;
}, 120_000);
afterAll(() => gw?.stop(), 60_000);

async function fioupRegister(root: string, ...extra: string[]) {
  const p = Bun.spawn([process.execPath, FIOUP, "register", "--server", gw.url, "--token", token, "--hwid", "amd64-linux", ...extra], {
    env: { ...process.env, FIOUP_ROOT: root, DOCKER_HOST: "unix:///nonexistent.sock" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code, out, err };
}

/** The device identity held under a FIOUP_ROOT: its uuid (client.pem's CN) and an HTTPS client with its certificate. */
function identityOf(root: string) {
  const dir = join(root, "var/sota");
  const cert = readFileSync(join(dir, "client.pem"), "utf8");
  const uuid = /(?:^|\n)CN=([^\n]+)/.exec(new X509Certificate(cert).subject)![1]!;
  return { uuid, cert, fetch: tlsFetch({ ca: gw.caPem, cert, key: readFileSync(join(dir, "pkey.pem"), "utf8") }) };
}

async function devices(): Promise<DeviceRow[]> {
  return ((await (await gw.adminFetch("/admin/devices?limit=1000")).json()) as { devices: DeviceRow[] }).devices;
}

const devicesListCli = () => {
  const r = Bun.spawnSync([process.execPath, GATEWAY, "devices", "list", "--data", gw.dataDir], { stdout: "pipe", stderr: "pipe" });
  expect(r.exitCode).toBe(0);
  return r.stdout.toString();
};

test("register --force keeps the uuid, refuses the old certificate at once, and leaves one device with its labels and tags", async () => {
  const root = await tempDir("register-force-");
  expect((await fioupRegister(root)).code).toBe(0);
  const before = identityOf(root);
  expect((await before.fetch(`${gw.url}/repo/timestamp.json`)).status).toBe(200);
  // What the admin gave this device belongs to its uuid.
  const labelled = await gw.adminFetch(`/admin/devices/${before.uuid}/labels`, post({ set: { ring: "canary" } }, "PUT"));
  expect(labelled.status).toBe(200);
  expect((await gw.adminFetch(`/admin/devices/${before.uuid}/tags`, post({ tags: ["main", "kiosk"] }, "PUT"))).status).toBe(200);
  const copy = await tempDir("register-force-copy-");
  cpSync(root, copy, { recursive: true });

  const again = await fioupRegister(root, "--force");
  expect(again.code).toBe(0);
  expect(again.out).toContain(`Registered device ${before.uuid} (`);
  expect(again.out).toContain("previous certificate is no longer accepted");
  expect(again.err).not.toContain("could not keep its identity");
  const after = identityOf(root);
  expect(after.uuid).toBe(before.uuid);
  expect(after.cert).not.toBe(before.cert);

  const rows = await devices();
  expect(rows.map((d) => d.uuid)).toEqual([before.uuid]);
  expect(rows[0]).toMatchObject({ labels: { ring: "canary" }, tags: ["main", "kiosk"], revokedAt: null });
  expect(devicesListCli().split("\n").filter((l) => /^[0-9a-f]{8}-/.test(l))).toHaveLength(1);

  // The copy's certificate is the superseded one: refused at once; the new one works.
  const old = identityOf(copy);
  const refused = await old.fetch(`${gw.url}/repo/timestamp.json`);
  expect(refused.status).toBe(403);
  expect(await refused.text()).toContain("superseded");
  expect((await after.fetch(`${gw.url}/repo/timestamp.json`)).status).toBe(200);
}, 120_000);

test("a registration naming a registered uuid without its current certificate is refused (409), with the token or the superseded certificate", async () => {
  const root = await tempDir("register-force-");
  expect((await fioupRegister(root)).code).toBe(0);
  const copy = await tempDir("register-force-copy-");
  cpSync(root, copy, { recursive: true });
  expect((await fioupRegister(root, "--force")).code).toBe(0);
  const owner = identityOf(root);
  const old = identityOf(copy);
  expect(old.uuid).toBe(owner.uuid);

  const k = await makeDeviceCsr(owner.uuid);
  const body = { name: "intruder", uuid: owner.uuid, csr: k.csrPem, "hardware-id": "amd64-linux" };
  const auth = { authorization: `Bearer ${token}` };
  const withToken = await tlsFetch({ ca: gw.caPem })(`${gw.url}/devices`, post(body, "POST", auth));
  expect(withToken.status).toBe(409);
  expect(await withToken.text()).toContain("did not present its current certificate");
  const withOldCert = await old.fetch(`${gw.url}/devices`, post(body, "POST", auth));
  expect(withOldCert.status).toBe(409);
  expect(await withOldCert.text()).toContain("not its current one");
  // Nothing changed: the owner's certificate still works.
  expect((await owner.fetch(`${gw.url}/repo/timestamp.json`)).status).toBe(200);

  // The copy's --force cannot keep the uuid: it becomes a new device and names the one it could not keep.
  const moved = await fioupRegister(copy, "--force");
  expect(moved.code).toBe(0);
  expect(moved.err).toContain(`could not keep its identity ${owner.uuid}: the gateway refused it: Registration refused`);
  expect(moved.err).toContain(`gateway devices revoke ${owner.uuid}`);
  const fresh = identityOf(copy);
  expect(fresh.uuid).not.toBe(owner.uuid);
  expect((await fresh.fetch(`${gw.url}/repo/timestamp.json`)).status).toBe(200);
  expect((await owner.fetch(`${gw.url}/repo/timestamp.json`)).status).toBe(200);
}, 120_000);

test("register --force on a revoked device registers a new identity and names the revoked one", async () => {
  const root = await tempDir("register-force-");
  expect((await fioupRegister(root)).code).toBe(0);
  const before = identityOf(root);
  expect((await gw.adminFetch(`/admin/devices/${before.uuid}/revoke`, { method: "POST" })).status).toBe(200);
  const again = await fioupRegister(root, "--force", "--format", "json");
  expect(again.code).toBe(0);
  const result = JSON.parse(again.out) as { uuid: string; reRegistered: boolean; abandoned?: { uuid: string; why: string } };
  expect(result.uuid).not.toBe(before.uuid);
  expect(result).toMatchObject({ reRegistered: false, abandoned: { uuid: before.uuid } });
  expect(result.abandoned!.why).toContain("was revoked");
  expect(again.err).toContain(`could not keep its identity ${before.uuid}`);
  // Revoked already: the warning does not tell the user to revoke it.
  expect(again.err).toContain(`${before.uuid} stays revoked on the gateway: nothing is left to do for it`);
  expect(again.err).not.toContain("gateway devices revoke");
  expect(result.abandoned).toMatchObject({ revoked: true });
  expect(identityOf(root).uuid).toBe(result.uuid);
}, 120_000);

test("a registration whose answer was lost (fioup killed once the gateway registered it) is asked again with the same single-use token: one device, the same uuid", async () => {
  const res = await gw.adminFetch("/admin/tokens", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({}) }); // one use
  const once = ((await res.json()) as { token: string }).token;
  const root = await tempDir("fioup-register-lost-");
  const args = ["register", "--server", gw.url, "--token", once, "--hwid", "amd64-linux", "--name", "lost-answer"];
  const env = { ...process.env, FIOUP_ROOT: root, DOCKER_HOST: "unix:///nonexistent.sock" };
  const killed = Bun.spawn([process.execPath, FIOUP, ...args], { env: { ...env, FIOUP_FAULT: "register:answered" }, stdout: "pipe", stderr: "pipe" });
  expect(await killed.exited).not.toBe(0);
  const named = async () => ((await (await gw.adminFetch("/admin/devices?limit=1000")).json()) as { devices: DeviceRow[] }).devices.filter((d) => d.name === "lost-answer");
  const first = await named();
  expect(first).toHaveLength(1); // registered on the gateway, nothing on the device
  const again = Bun.spawn([process.execPath, FIOUP, ...args], { env, stdout: "pipe", stderr: "pipe" });
  const [code, err] = await Promise.all([again.exited, new Response(again.stderr).text()]);
  expect(code, err).toBe(0);
  const now = await named();
  expect(now.map((d) => d.uuid)).toEqual([first[0]!.uuid]);
  expect(new X509Certificate(readFileSync(join(root, "var/sota/client.pem"), "utf8")).subject).toContain(`CN=${first[0]!.uuid}`);
  expect(existsSync(join(root, "var/sota/register.pending.json"))).toBe(false);
  // The token's one use went to that device: another registration with it is refused.
  const other = Bun.spawn([process.execPath, FIOUP, "register", "--server", gw.url, "--token", once, "--hwid", "amd64-linux"], { env: { ...env, FIOUP_ROOT: await tempDir("fioup-register-other-") }, stdout: "pipe", stderr: "pipe" });
  const [otherCode, otherErr] = await Promise.all([other.exited, new Response(other.stderr).text()]);
  expect(otherCode).not.toBe(0);
  expect(otherErr).toContain("the token has been used up (1 uses)");
}, 60_000);

test("a device registered again under a new uuid reports its apps-states to the new record, though its apps did not change", async () => {
  const root = await tempDir("register-apps-states-");
  expect((await fioupRegister(root)).code).toBe(0);
  const daemonCycle = async () => {
    const p = Bun.spawn([process.execPath, FIOUP, "daemon", "--cycles", "1"], {
      env: { ...process.env, FIOUP_ROOT: root, DOCKER_HOST: "unix:///nonexistent.sock" },
      stdout: "pipe",
      stderr: "pipe",
    });
    await p.exited;
  };
  const appsStatesOf = async (uuid: string) => ((await (await gw.adminFetch(`/admin/devices/${uuid}`)).json()) as { appsStates: unknown }).appsStates;
  await daemonCycle();
  const first = identityOf(root).uuid;
  expect(await appsStatesOf(first)).not.toBeNull(); // no apps: an empty report, sent once
  expect((await gw.adminFetch(`/admin/devices/${first}/revoke`, { method: "POST" })).status).toBe(200);
  expect((await fioupRegister(root, "--force")).code).toBe(0);
  const second = identityOf(root).uuid;
  expect(second).not.toBe(first);
  await daemonCycle();
  expect(await appsStatesOf(second)).not.toBeNull();
}, 120_000);

test("register --force whose new identity's answer was lost is asked again as the same registration: no second new device, no second use of the token", async () => {
  const res = await gw.adminFetch("/admin/tokens", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ maxUses: 2 }) });
  const twice = ((await res.json()) as { token: string }).token;
  const root = await tempDir("register-force-lost-");
  const args = ["register", "--server", gw.url, "--token", twice, "--hwid", "amd64-linux", "--name", "force-lost"];
  const env = { ...process.env, FIOUP_ROOT: root, DOCKER_HOST: "unix:///nonexistent.sock" };
  const run = async (extra: Record<string, string> = {}) => {
    const p = Bun.spawn([process.execPath, FIOUP, ...args, "--force"], { env: { ...env, ...extra }, stdout: "pipe", stderr: "pipe" });
    const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
    return { code, err };
  };
  const registered = Bun.spawn([process.execPath, FIOUP, ...args], { env, stdout: "pipe", stderr: "pipe" });
  expect(await registered.exited).toBe(0);
  const old = identityOf(root).uuid;
  expect((await gw.adminFetch(`/admin/devices/${old}/revoke`, { method: "POST" })).status).toBe(200);
  // The revoked uuid is refused, a new one is registered, and fioup is killed before it saves the answer.
  expect((await run({ FIOUP_FAULT: "register:answered" })).code).not.toBe(0);
  const named = async () => (await devices()).filter((d) => d.name === "force-lost").map((d) => d.uuid);
  const lost = (await named()).filter((u) => u !== old);
  expect(lost).toHaveLength(1);
  const again = await run();
  expect(again.code, again.err).toBe(0);
  expect(identityOf(root).uuid).toBe(lost[0]!);
  expect((await named()).sort()).toEqual([old, lost[0]!].sort());
}, 120_000);
