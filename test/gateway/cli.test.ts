/** The gateway CLI against a running gateway, the way an operator uses it. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { makeDeviceCsr } from "./_device.ts";
import { post, tlsFetch } from "./_client.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";

const MAIN = join(import.meta.dir, "..", "..", "gateway", "main.ts");
let dir: string;
let g: GatewayHandle;

const cli = (...args: string[]) => {
  const r = Bun.spawnSync([process.execPath, MAIN, ...args], { stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, out: r.stdout.toString(), err: r.stderr.toString() };
};

beforeAll(async () => {
  g = await startGateway({ args: ["--factory", "acme"] });
  dir = g.dataDir;
}, 120_000);

afterAll(async () => {
  await g?.stop();
}, 120_000);

describe("gateway CLI", () => {
  test("serve initialised the data dir with private secrets and never logged the admin token", async () => {
    const token = (await readFile(join(dir, "admin-token"), "utf8")).trim();
    expect((await stat(join(dir, "admin-token"))).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, "pki", "ca.key"))).mode & 0o777).toBe(0o600);
    expect(JSON.parse(await readFile(join(dir, "factory.json"), "utf8"))).toEqual({ name: "acme" });
    expect(await readFile(g.logFile, "utf8")).not.toContain(token.split(".")[0]);
  }, 60_000);

  test("tokens create, a device registers with the token, devices list/show/revoke", async () => {
    const created = cli("tokens", "create", "--data", dir, "--tag", "beta", "--expires", "2h", "--format", "json");
    expect(created.code).toBe(0);
    const { token } = JSON.parse(created.out) as { token: string };
    const ca = await readFile(join(dir, "pki", "ca.pem"), "utf8");
    const k = await makeDeviceCsr();
    const reg = await tlsFetch({ ca })(`${g.url}/devices`, {
      ...post({ name: "kiosk", uuid: k.uuid, csr: k.csrPem, "hardware-id": "arm64-linux" }),
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    });
    expect(reg.status).toBe(201);

    const list = cli("devices", "list", "--data", dir, "--format", "json");
    expect(list.code).toBe(0);
    expect((JSON.parse(list.out) as { devices: { uuid: string; tags: string[]; factory: string }[] }).devices).toEqual([
      expect.objectContaining({ uuid: k.uuid, tags: ["beta"], factory: "acme" }),
    ]);
    expect(cli("devices", "list", "--data", dir).out).toContain("kiosk");
    const show = cli("devices", "show", k.uuid, "--data", dir);
    expect(show.code).toBe(0);
    expect(show.out).toContain("arm64-linux");
    expect(cli("tokens", "list", "--data", dir).out).toContain("beta");

    expect(cli("devices", "revoke", k.uuid, "--data", dir).code).toBe(0);
    expect(JSON.parse(cli("devices", "show", k.uuid, "--data", dir, "--format", "json").out).revokedAt).toBeString();
  }, 60_000);

  test("targets list and keys rotate work; --server/--token with the CA pinned by the token", async () => {
    const token = (await readFile(join(dir, "admin-token"), "utf8")).trim();
    const t = cli("targets", "list", "--server", g.url, "--token", token, "--format", "json");
    expect(t.code).toBe(0);
    expect(JSON.parse(t.out)).toMatchObject({ targets: {}, version: 1 });
    const r = cli("keys", "rotate", "snapshot", "--data", dir, "--format", "json");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out).rootVersion).toBe(2);
    const badPin = cli("targets", "list", "--server", g.url, "--token", `${token.split(".")[0]}.${"0".repeat(64)}`);
    expect(badPin.code).toBe(4);
    expect(badPin.err).toContain("does not match the pin");
  }, 60_000);

  test("errors: wrong token exits 3 with the gateway's reason; bad usage exits 2", async () => {
    const pin = (await readFile(join(dir, "admin-token"), "utf8")).trim().split(".")[1];
    const wrong = cli("devices", "list", "--server", g.url, "--token", `wrong.${pin}`);
    expect(wrong.code).toBe(3);
    expect(wrong.err).toContain("Admin token refused");
    expect(cli("devices", "revoke", "--data", dir).code).toBe(2);
    expect(cli("keys", "rotate", "bogus", "--data", dir).code).toBe(2);
    expect(cli("tokens", "create", "--data", dir, "--expires", "soon").code).toBe(1);
    expect(cli("serve").code).toBe(2);
  }, 60_000);

  test("SIGTERM stops the gateway gracefully", async () => {
    const g2 = await startGateway();
    expect(await Bun.file(join(g2.dataDir, "serve.json")).exists()).toBe(true);
    const t0 = Date.now();
    await g2.stop(); // SIGTERM; SIGKILL only after 10 s
    expect(Date.now() - t0).toBeLessThan(9000);
    expect(await readFile(g2.logFile, "utf8")).toContain("gateway: stopped");
    expect(await Bun.file(join(g2.dataDir, "serve.json")).exists()).toBe(false);
  }, 60_000);

  test("registry gc runs on the data dir", () => {
    const r = cli("registry", "gc", "--data", dir, "--format", "json");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ blobsRemoved: 0 });
  }, 60_000);
});
