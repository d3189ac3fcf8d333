/**
 * `gateway export --server URL --token TOKEN` with the tokens its help names, against a real
 * gateway: a publish token exports (it reads /repo/ as the admin token does), and a token the
 * gateway refuses (a wrong secret with the right pin, an expired one) exits 3 with the
 * gateway's reason, as the exit-code table promises.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { TokenCreated, TokenRequest } from "../../lib/api/admin.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { tempDir } from "../harness/tmp.ts";

const MAIN = join(import.meta.dir, "..", "..", "gateway", "main.ts");
let g: GatewayHandle;

const json = (body: unknown): RequestInit => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

async function createToken(req: TokenRequest): Promise<TokenCreated> {
  const res = await g.adminFetch("/admin/tokens", json(req));
  expect(res.status).toBe(201);
  return (await res.json()) as TokenCreated;
}

/** `gateway export` of target 2 for amd64-linux, as an operator off the gateway host runs it. */
async function exportWith(token: string, target = "2") {
  const out = join(await tempDir("export-token-"), "bundle");
  const sub = Bun.spawn([process.execPath, MAIN, "export", "--server", g.url, "--token", token, "--target", target, "--hwid", "amd64-linux", "--out", out], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(sub.stdout).text(), new Response(sub.stderr).text(), sub.exited]);
  return { code, stdout, stderr, out };
}

beforeAll(async () => {
  g = await startGateway();
  // A target without apps: the bundle is its metadata alone, which is what the token is asked for.
  const entry = {
    length: 0,
    hashes: { sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
    custom: { version: "2", hardwareIds: ["amd64-linux"], tags: ["main"], docker_compose_apps: {} },
  };
  expect((await g.adminFetch("/admin/targets", json({ targets: { "amd64-linux-2": entry } }))).status).toBe(200);
}, 120_000);

afterAll(async () => {
  await g?.stop();
}, 120_000);

describe("gateway export --token", () => {
  test("a publish token exports, as the help says", async () => {
    const pub = await createToken({ role: "publish", name: "ci" });
    const r = await exportWith(pub.token);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: expect.any(String) });
    expect(r.stdout).toContain("amd64-linux-2");
    expect(existsSync(join(r.out, "index.json"))).toBe(true);
  }, 60_000);

  test("a wrong secret with the right pin exits 3 saying the token was refused", async () => {
    const pin = g.adminToken.slice(g.adminToken.indexOf(".") + 1);
    const r = await exportWith(`not-a-secret-of-this-gateway.${pin}`);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`Cannot fetch ${g.url}/repo/1.root.json: gateway answered 403: Token refused: unknown token`);
    expect(r.stderr).not.toContain("client certificate");
    expect(existsSync(join(r.out, "index.json"))).toBe(false);
  }, 60_000);

  test("a version the gateway lacks is said with the versions it has for that hardware id", async () => {
    const r = await exportWith(g.adminToken, "9");
    expect(r.code).toBe(20);
    expect(r.stderr).toContain("No target with version 9 for hardware id amd64-linux in the gateway's targets.json: it has 2");
    expect(existsSync(join(r.out, "index.json"))).toBe(false);
  }, 60_000);

  test("an expired publish token exits 3 saying when it expired", async () => {
    const old = await createToken({ role: "publish", name: "short", expiresIn: "1s" });
    await Bun.sleep(Date.parse(old.expiresAt) - Date.now() + 200);
    const r = await exportWith(old.token);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`Publish token refused: this token expired at ${old.expiresAt}`);
  }, 60_000);
});
