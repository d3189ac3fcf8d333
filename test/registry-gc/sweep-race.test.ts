/**
 * `gateway registry gc --untargeted` removes an old manifest no target names, marks what the
 * others reference, then sweeps the rest: a publish that puts that manifest again meanwhile (it
 * reuses it: gateway/publish/transfer.ts) must not be left with a manifest gc then removed, or
 * whose content the sweep removed, which devices would find only when they get 404. Here the real
 * gc, on a real gateway's registry, stops at its GATEWAY_FAULT points (gateway/registry/gc.ts):
 * with the manifest half removed, and between its mark and its sweep, while the manifest is put
 * again through the gateway's registry.
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
let gw: GatewayHandle;
let firstDigest: string | undefined;

beforeAll(async () => {
  gw = await startGateway();
}, 120_000);

afterAll(async () => {
  await gw?.stop();
}, 60_000);

/** Pushes an image to `repo` as `v1`, no target naming it, older than gc's grace period (1 hour). */
async function oldImage(repo: string) {
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
  ageRegistry(gw, 2 * HOUR);
  return { client, config, layer, manifest, digest };
}

/** Runs gc until it stops at the fault point, saying `where`, runs `meanwhile`, resumes it; its stdout. */
async function gcPausedAt(fault: string, where: string, meanwhile: () => Promise<void>): Promise<string> {
  const gc = Bun.spawn([process.execPath, join(REPO, "gateway/main.ts"), "registry", "gc", "--data", gw.dataDir, "--untargeted"], {
    env: { ...process.env, GATEWAY_FAULT: fault },
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  try {
    let said = "";
    const reader = gc.stderr.getReader();
    while (!said.includes(`gc: paused ${where}`)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`gc ended before its fault point ${fault}: ${said}`);
      said += new TextDecoder().decode(value);
    }
    reader.releaseLock();
    await meanwhile();
  } finally {
    gc.stdin.end();
  }
  expect(await gc.exited).toBe(0);
  return await new Response(gc.stdout).text();
}

describe("gateway registry gc --untargeted while a manifest is put again", () => {
  test("a manifest put between gc's mark and its sweep keeps its blobs, and pulls", async () => {
    const { client, config, layer, manifest, digest } = await oldImage("main/sweep-race");
    firstDigest = digest;
    const out = await gcPausedAt("gc-pause-before-sweep", "before the sweep", async () => {
      // gc has removed the manifest and marked what stays: a publish reusing it puts it again now.
      expect(await client.headManifest("main/sweep-race", digest)).toBeUndefined();
      expect(await client.putManifest("main/sweep-race", digest, manifest, OCI_MANIFEST)).toBe(digest);
    });

    // The manifest is back, and all it references is there: a device pulls it.
    const registry = join(gw.dataDir, "registry");
    for (const d of [digest, digestBytes(config), digestBytes(layer)]) expect(existsSync(join(registry, "blobs/sha256", d.slice(7)))).toBe(true);
    const got = await client.getManifest("main/sweep-race", digest);
    expect(got.bytes).toEqual(manifest);
    expect(await client.getBlobBytes("main/sweep-race", digestBytes(layer))).toEqual(layer);
    expect(await client.getBlobBytes("main/sweep-race", digestBytes(config))).toEqual(config);
    expect(out).toStartWith("removed 1 manifests no target reaches and 0 blobs");
  }, 120_000);

  test("a manifest put again while gc is removing it (its link gone, its tag not yet) stays, under its tag, and pulls", async () => {
    const { client, layer, manifest, digest } = await oldImage("main/delete-race");
    // The only manifest gc could remove: the first test's goes now.
    if (firstDigest) await client.deleteManifest("main/sweep-race", firstDigest);
    const out = await gcPausedAt("gc-pause-in-delete", `with main/delete-race@${digest} half removed`, async () => {
      expect(await client.putManifest("main/delete-race", "v1", manifest, OCI_MANIFEST)).toBe(digest);
    });
    expect((await client.getManifest("main/delete-race", "v1")).bytes).toEqual(manifest);
    expect((await client.getManifest("main/delete-race", digest)).bytes).toEqual(manifest);
    expect(await client.getBlobBytes("main/delete-race", digestBytes(layer))).toEqual(layer);
    expect(out).toStartWith("removed 0 manifests no target reaches");
  }, 120_000);
});
