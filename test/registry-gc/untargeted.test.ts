/**
 * `gateway registry gc --untargeted` on a real gateway's registry: two versions of two apps
 * published by `gateway publish` (a built image whose last layer changes in the second, and a
 * third-party multi-platform nginx index pinned by both), the first version's targets removed
 * through the admin API. Plain gc frees none of the first version's content (the problem);
 * --untargeted removes its app manifests, its image manifest, tag and changed layer, and a device's
 * resolver still fetches everything the remaining target needs, for both platforms of the index.
 * A dry run, a run within the grace period and a run whose database cannot be read remove nothing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseReference } from "../../lib/oci/reference.ts";
import { publish, type PublishResult } from "../../gateway/publish/publish.ts";
import type { GatewayHandle } from "../harness/gateway.ts";
import { run, tempDir } from "../harness/tmp.ts";
import { gatewayRegistry } from "../publish/_inspect.ts";
import { commit, git } from "../publish/_setup.ts";
import { deviceFetches, startPublishSetup, type PublishSetup } from "./_setup.ts";

const REPO = resolve(import.meta.dir, "../..");
let setup: PublishSetup;
let gw: GatewayHandle;
let v1: PublishResult;
let v2: PublishResult;
let short1: string;

const gateway = (...args: string[]) => run([process.execPath, join(REPO, "gateway/main.ts"), ...args], { allowFail: true });
const registryDir = () => join(gw.dataDir, "registry");
const blobFile = (digest: string) => join(registryDir(), "blobs", "sha256", digest.slice(7));
/** Every file under the registry, what "nothing removed" is checked against. */
const files = () => readdirSync(registryDir(), { recursive: true }).map(String).sort();

const app = (r: PublishResult, name: string) => r.apps.find((a) => a.name === name)!;
const pinned = (r: PublishResult, name: string) => parseReference(app(r, name).services[0]!.pinned);

/** The layers of the built simple-app image of a version (a single-platform manifest). */
async function simpleLayers(r: PublishResult): Promise<string[]> {
  const ref = pinned(r, "simple-app");
  const m = JSON.parse(new TextDecoder().decode((await gatewayRegistry(gw).getManifest(ref.repository, ref.digest!)).bytes));
  return m.layers.map((l: { digest: string }) => l.digest);
}

beforeAll(async () => {
  setup = await startPublishSetup();
  gw = setup.gw;
  short1 = await git(setup.repo, "rev-parse", "--short=7", "HEAD");
  v1 = await publish(setup.opts());
  await commit(setup.repo, { "simple-app/app.sh": `${setup.fixture("simple-app/app.sh")}\necho version 2\n` }, "v2");
  v2 = await publish(setup.opts());
  // The first version's targets are removed, as retention or an operator would.
  for (const name of Object.keys(v1.targets).filter((n) => v1.targets[n]!.custom.version === String(v1.version))) {
    const res = await gw.adminFetch(`/admin/targets/${name}`, { method: "DELETE" });
    expect(res.status).toBe(200);
  }
}, 300_000);

afterAll(async () => {
  await setup?.stop();
}, 180_000);

describe("gateway registry gc --untargeted", () => {
  test("the setup: the second version changed simple-app's image and kept the same nginx index", async () => {
    expect(v2.version).toBeGreaterThan(v1.version);
    expect(pinned(v2, "simple-app").digest).not.toBe(pinned(v1, "simple-app").digest);
    expect(pinned(v2, "httpd").digest).toBe(pinned(v1, "httpd").digest);
    expect(app(v2, "simple-app").manifestDigest).not.toBe(app(v1, "simple-app").manifestDigest);
  });

  test("plain gc frees none of what the removed target left behind", async () => {
    const r = await gateway("registry", "gc", "--data", gw.dataDir, "--grace", "0s");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toStartWith("removed ");
    const changed = (await simpleLayers(v1)).at(-1)!;
    expect(existsSync(blobFile(changed))).toBe(true);
    expect(existsSync(blobFile(app(v1, "simple-app").manifestDigest))).toBe(true);
  });

  test("within the grace period, or as a dry run, nothing is removed", async () => {
    const before = files();
    const fresh = await gateway("registry", "gc", "--data", gw.dataDir, "--untargeted");
    expect(fresh.stderr).toBe("");
    expect(fresh.stdout).toStartWith("removed 0 manifests no target reaches and 0 blobs (0 bytes freed)");
    const dry = await gateway("registry", "gc", "--data", gw.dataDir, "--untargeted", "--grace", "0s", "--dry-run");
    expect(dry.stderr).toBe("");
    expect(dry.code).toBe(0);
    // At least simple-app's first app manifest and image manifest, and what only they reference.
    expect(dry.stdout).toMatch(/^would remove [1-9][0-9]* manifests no target reaches and [1-9][0-9]* blobs \([1-9][0-9]* bytes freed\)/);
    expect(files()).toEqual(before);
  });

  test("a database that cannot be read removes nothing and says why", async () => {
    const before = files();
    const bad = join(await tempDir("gc-bad-db-"), "gateway.db");
    writeFileSync(bad, "this is not a SQLite database, it is long enough to be read as one: ".repeat(20));
    const r = await gateway("registry", "gc", "--data", gw.dataDir, "--untargeted", "--grace", "0s", "--db", bad);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`Cannot read the current targets from ${bad}: `);
    expect(r.stderr).toContain("Nothing was removed");
    const missing = await gateway("registry", "gc", "--data", gw.dataDir, "--untargeted", "--grace", "0s", "--db", join(bad, "..", "nope.db"));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("no such file");
    expect(files()).toEqual(before);
  });

  test("removes the first version's manifests, tag and changed layer; the remaining target still resolves and fetches on every platform", async () => {
    const client = gatewayRegistry(gw);
    const oldLayers = await simpleLayers(v1);
    const newLayers = await simpleLayers(v2);
    const changed = oldLayers.filter((l) => !newLayers.includes(l));
    expect(changed.length).toBeGreaterThan(0);
    const oldImage = pinned(v1, "simple-app");

    const r = await gateway("registry", "gc", "--data", gw.dataDir, "--untargeted", "--grace", "0s");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const [, manifests, blobs, bytes] = /^removed ([0-9]+) manifests no target reaches and ([0-9]+) blobs \(([0-9]+) bytes freed\)/.exec(r.stdout) ?? [];
    expect(Number(manifests)).toBeGreaterThanOrEqual(2); // simple-app's app manifest and image manifest
    expect(Number(blobs)).toBeGreaterThanOrEqual(3); // those two, and the changed layer
    expect(Number(bytes)).toBeGreaterThan(0);

    // The first version is gone: app manifest, image manifest and its tag, the changed layer.
    const oldApp = parseReference(app(v1, "simple-app").uri);
    expect(await client.headManifest(oldApp.repository, oldApp.digest!)).toBeUndefined();
    expect(await client.headManifest(oldImage.repository, oldImage.digest!)).toBeUndefined();
    expect(await client.headManifest(oldImage.repository, short1)).toBeUndefined();
    for (const l of changed) {
      expect(existsSync(blobFile(l))).toBe(false);
      expect(await client.blobExists(oldImage.repository, l)).toBeUndefined();
    }

    // What the second version needs is all there: a device resolves and fetches it, for both
    // platforms of the nginx index (arm64's manifest is reached only through the index; the
    // simple-app image built here is amd64 alone, so only the amd64 device has its new layers).
    const [amd64, arm64] = await deviceFetches(gw, v2);
    for (const l of newLayers) expect(amd64!.blobs.some((b) => b.digest === l)).toBe(true);
    expect(arm64!.blobs.some((b) => b.kind === "layer")).toBe(true);

    // Nothing more to do the second time.
    const again = await gateway("registry", "gc", "--data", gw.dataDir, "--untargeted", "--grace", "0s");
    expect(again.stdout).toStartWith("removed 0 manifests no target reaches and 0 blobs (0 bytes freed)");
  }, 120_000);
});
