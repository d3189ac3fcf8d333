import { describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Hono } from "hono";
import { createRegistry } from "./registry.ts";
import { ServedBytes } from "./served-bytes.ts";

const sha256 = (b: Uint8Array) => `sha256:${new Bun.CryptoHasher("sha256").update(b).digest("hex")}`;

async function withRegistry(fn: (app: Hono, served: ServedBytes) => Promise<void>, perDevice = true): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "registry-served-"));
  try {
    const served = new ServedBytes({ perDevice });
    const registry = createRegistry({ root, served, authorize: () => true });
    // The gateway sets the caller's device before the registry runs; here a header stands in.
    const app = new Hono()
      .use(async (c, next) => {
        const uuid = c.req.header("x-test-device");
        if (uuid) c.set("device" as never, { uuid } as never);
        await next();
      })
      .route("/", registry);
    await fn(app, served);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

describe("ServedBytes", () => {
  test("counts blob bytes per device as the body is read, ranges only for their length", async () => {
    await withRegistry(async (app, served) => {
      const blob = crypto.getRandomValues(new Uint8Array(50_000));
      const digest = sha256(blob);
      const put = await app.request(`/v2/f/a/blobs/uploads/?digest=${digest}`, { method: "POST", body: blob });
      expect(put.status).toBe(201);
      const whole = await app.request(`/v2/f/a/blobs/${digest}`, { headers: { "x-test-device": "d1" } });
      expect(served.get("blob", "device:d1")).toBe(0); // nothing pulled yet: nothing counted
      expect((await whole.arrayBuffer()).byteLength).toBe(50_000);
      expect(served.get("blob", "device:d1")).toBe(50_000);
      const part = await app.request(`/v2/f/a/blobs/${digest}`, { headers: { "x-test-device": "d1", range: "bytes=40000-" } });
      expect(part.status).toBe(206);
      await part.arrayBuffer();
      expect(served.get("blob", "device:d1")).toBe(60_000);
      const head = await app.request(`/v2/f/a/blobs/${digest}`, { method: "HEAD", headers: { "x-test-device": "d2" } });
      expect(head.status).toBe(200);
      expect(served.get("blob", "device:d2")).toBe(0);
      expect(served.render().join("\n")).toContain('gateway_registry_bytes_served_total{kind="blob",client="device:d1"} 60000');
    });
  });

  test("without --metrics-per-device every device counts as one client: no series, and no uuid, per device", async () => {
    await withRegistry(async (app, served) => {
      const blob = crypto.getRandomValues(new Uint8Array(10_000));
      const digest = sha256(blob);
      await app.request(`/v2/f/a/blobs/uploads/?digest=${digest}`, { method: "POST", body: blob });
      for (const uuid of ["d1", "d2", "d3"]) await (await app.request(`/v2/f/a/blobs/${digest}`, { headers: { "x-test-device": uuid } })).arrayBuffer();
      const shown = served.render().filter((l) => !l.startsWith("#"));
      expect(shown).toEqual(['gateway_registry_bytes_served_total{kind="blob",client="device"} 30000']);
    }, false);
  });

  test("a body cancelled after the first chunk counts only that chunk", async () => {
    await withRegistry(async (app, served) => {
      const blob = crypto.getRandomValues(new Uint8Array(4 << 20));
      const digest = sha256(blob);
      await app.request(`/v2/f/a/blobs/uploads/?digest=${digest}`, { method: "POST", body: blob });
      const res = await app.request(`/v2/f/a/blobs/${digest}`, { headers: { "x-test-device": "d3" } });
      const reader = res.body!.getReader();
      const first = await reader.read();
      await reader.cancel();
      expect(served.get("blob", "device:d3")).toBe(first.value!.byteLength);
      expect(first.value!.byteLength).toBeLessThan(4 << 20);
    });
  });
});
