/**
 * `gateway registry gc --untargeted` removes an old manifest no target names, marks what the
 * others reference, then sweeps the rest: a publish that puts that manifest again after the mark
 * (it reuses it: gateway/publish/transfer.ts) must not be left with a manifest whose content the
 * sweep then removed, which devices would find only when they get 404 for its blobs. Here the real
 * gc, on a real gateway's registry, stops between its mark and its sweep (the GATEWAY_FAULT point
 * of gateway/registry/gc.ts) while the manifest is put again through the gateway's registry.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { digestBytes } from "../../lib/oci/digest.ts";
import { OCI_MANIFEST } from "../../gateway/registry/manifest.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { gatewayRegistry } from "../publish/_inspect.ts";
import { ageRegistry } from "./_setup.ts";

const REPO = resolve(import.meta.dir, "../..");
const HOUR = 3_600_000;
const repo = "main/sweep-race";
let gw: GatewayHandle;

beforeAll(async () => {
  gw = await startGateway();
}, 120_000);

afterAll(async () => {
  await gw?.stop();
}, 60_000);

describe("gateway registry gc --untargeted while a manifest is put again", () => {
  test("a manifest put between gc's mark and its sweep keeps its blobs, and pulls", async () => {
    const client = gatewayRegistry(gw);
    const config = new TextEncoder().encode(JSON.stringify({ architecture: "amd64", os: "linux" }));
    const layer = crypto.getRandomValues(new Uint8Array(4096));
    for (const b of [config, layer]) await client.pushBlob(repo, b);
    const desc = (mediaType: string, b: Uint8Array) => ({ mediaType, digest: digestBytes(b), size: b.byteLength });
    const manifest = new TextEncoder().encode(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: desc("application/vnd.oci.image.config.v1+json", config),
        layers: [desc("application/vnd.oci.image.layer.v1.tar", layer)],
      }),
    );
    const digest = await client.putManifest(repo, "v1", manifest, OCI_MANIFEST);
    // No target names it, and it is older than gc's grace period (1 hour).
    ageRegistry(gw, 2 * HOUR);

    const gc = Bun.spawn([process.execPath, join(REPO, "gateway/main.ts"), "registry", "gc", "--data", gw.dataDir, "--untargeted"], {
      env: { ...process.env, GATEWAY_FAULT: "gc-pause-before-sweep" },
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
    });
    try {
      // gc has removed the manifest and marked what stays: a publish reusing it puts it again now.
      let said = "";
      const reader = gc.stderr.getReader();
      while (!said.includes("paused before the sweep")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`gc ended before its sweep: ${said}`);
        said += new TextDecoder().decode(value);
      }
      reader.releaseLock();
      expect(await client.headManifest(repo, digest)).toBeUndefined();
      expect(await client.putManifest(repo, digest, manifest, OCI_MANIFEST)).toBe(digest);
    } finally {
      gc.stdin.end();
    }
    expect(await gc.exited).toBe(0);

    // The manifest is back, and all it references is there: a device pulls it.
    const registry = join(gw.dataDir, "registry");
    for (const d of [digest, digestBytes(config), digestBytes(layer)]) expect(existsSync(join(registry, "blobs/sha256", d.slice(7)))).toBe(true);
    const got = await client.getManifest(repo, digest);
    expect(got.bytes).toEqual(manifest);
    expect(await client.getBlobBytes(repo, digestBytes(layer))).toEqual(layer);
    expect(await client.getBlobBytes(repo, digestBytes(config))).toEqual(config);
    expect(await new Response(gc.stdout).text()).toStartWith("removed 1 manifests no target reaches and 0 blobs");
  }, 120_000);
});
