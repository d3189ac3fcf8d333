/**
 * `fioup register` with a registration token the gateway refuses (used up, revoked, unknown) says
 * the gateway's reason in its own words, without its JSON around it, and the one way forward: a
 * new token from the gateway's admin. Against a real gateway; nothing is written on the device.
 * A device revoked after registering reads the gateway's reason too.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { tempDir } from "../harness/tmp.ts";

const MAIN = join(import.meta.dir, "../../fioup/main.ts");
let gw: GatewayHandle;

beforeAll(async () => {
  gw = await startGateway();
}, 120_000);
afterAll(() => gw?.stop(), 60_000);

async function register(root: string, token: string) {
  const p = Bun.spawn([process.execPath, MAIN, "register", "--server", gw.url, "--token", token, "--hwid", "amd64-linux"], {
    env: { ...process.env, FIOUP_ROOT: root, DOCKER_HOST: "unix:///nonexistent.sock" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
  return { code, err };
}

test("a used-up registration token is said in the gateway's words, with the way forward; nothing is written", async () => {
  const res = await gw.adminFetch("/admin/tokens", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ maxUses: 1 }) });
  expect(res.status).toBe(201);
  const { token } = (await res.json()) as { token: string };
  const first = await register(await tempDir("register-refused-"), token);
  expect(first.err).not.toContain("Registration refused");

  const root = await tempDir("register-refused-");
  const second = await register(root, token);
  expect(second.code).toBe(32);
  expect(second.err).toMatch(/Cannot register with \S+: gateway answered 401: Registration refused: [^{}"]*used up[^{}"]*; ask the gateway's admin for a new registration token \(gateway tokens create\)\n/);
  expect(readdirSync(root)).toEqual([]);
}, 120_000);

test("a revoked device's check says it is revoked, in the gateway's words, not a bare HTTP 403", async () => {
  const res = await gw.adminFetch("/admin/tokens", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ maxUses: 1 }) });
  const { token } = (await res.json()) as { token: string };
  const root = await tempDir("register-revoked-");
  expect((await register(root, token)).code).toBe(0);
  const uuid = await deviceUuid(root);
  expect((await gw.adminFetch(`/admin/devices/${uuid}/revoke`, { method: "POST" })).status).toBe(200);
  const p = Bun.spawn([process.execPath, MAIN, "check"], { env: { ...process.env, FIOUP_ROOT: root, DOCKER_HOST: "unix:///nonexistent.sock" }, stdout: "pipe", stderr: "pipe" });
  const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
  expect(code).not.toBe(0);
  expect(err).toContain("HTTP 403 for");
  expect(err).toContain("Device revoked: this certificate is no longer accepted");
}, 60_000);

/** The uuid a registered device's `fioup status --format json` gives. */
async function deviceUuid(root: string): Promise<string> {
  const p = Bun.spawn([process.execPath, MAIN, "status", "--format", "json"], { env: { ...process.env, FIOUP_ROOT: root, DOCKER_HOST: "unix:///nonexistent.sock" }, stdout: "pipe", stderr: "pipe" });
  const [out] = await Promise.all([new Response(p.stdout).text(), p.exited]);
  return JSON.parse(out).uuid;
}
