/**
 * A gateway that is the token realm of an external registry (serve --external-registry-service)
 * serves no registry itself. Its embedded registry's /v2 routes stayed mounted: a publish or a
 * device given the gateway's host as the registry pushed into, or pulled from, an empty local store
 * the fleet never sees. Now every /v2 request there is answered 404 with the OCI error body, which
 * names the registry it issues tokens for and where that registry is found; nothing is stored.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";

let gw: GatewayHandle;
beforeAll(async () => {
  gw = await startGateway({ args: ["--external-registry-service", "fleet-registry"] });
}, 120_000);
afterAll(() => gw?.stop(), 60_000);

test("on the token realm of an external registry, /v2 answers an OCI error naming that registry, and a push stores nothing", async () => {
  const blob = crypto.getRandomValues(new Uint8Array(1024));
  const digest = `sha256:${new Bun.CryptoHasher("sha256").update(blob).digest("hex")}`;
  for (const [path, init] of [
    ["/v2/", {}],
    ["/v2/main/web/manifests/latest", {}],
    [`/v2/main/web/blobs/uploads/?digest=${digest}`, { method: "POST", body: blob }],
  ] as const) {
    const res = await gw.adminFetch(path, init);
    expect([path, res.status, res.headers.get("content-type")]).toEqual([path, 404, "application/json"]);
    const body = (await res.json()) as { errors: { code: string; message: string; detail?: unknown }[] };
    expect(body.errors).toHaveLength(1);
    expect(body.errors[0]!.code).toBe("UNSUPPORTED");
    expect(body.errors[0]!.message).toStartWith(
      'This gateway serves no registry: it issues the tokens of the external registry whose service is "fleet-registry" (gateway serve --external-registry-service fleet-registry). Push and pull there',
    );
    expect(body.errors[0]!.detail).toEqual({ service: "fleet-registry" });
  }
  // The tokens the external registry relies on are still issued.
  expect((await gw.adminFetch("/token?service=fleet-registry&scope=repository:main/web:pull")).status).toBe(200);
  const registry = join(gw.dataDir, "registry");
  expect(existsSync(registry) ? readdirSync(registry, { recursive: true }).map(String).filter((f) => f.includes("blobs") || f.includes("uploads")) : []).toEqual([]);
});
