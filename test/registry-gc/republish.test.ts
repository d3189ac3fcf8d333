/**
 * `gateway registry gc --untargeted` while `gateway publish` re-publishes a version no target names
 * any more: its content is all in the registry, older than gc's grace period, so publish pushes
 * nothing new, and a gc that ran after publish pushed its apps but before it signed their target
 * removed what the new target needs (gc spares manifests by when they were last put, and a HEAD
 * that finds one changes nothing). publish now puts every manifest it reuses on the gateway's
 * registry again (gateway/publish/transfer.ts). Here gc runs, for real, each time publish has
 * pushed an app (the publish waits for it), then a device fetches the new target on both
 * platforms of the nginx index; again with --registry naming the gateway in another spelling of
 * --server's host, which publish must still know for the gateway's (publish.ts isServerHost).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join, resolve } from "node:path";
import { publish, type PublishOptions, type PublishResult } from "../../gateway/publish/publish.ts";
import type { GatewayHandle } from "../harness/gateway.ts";
import { run } from "../harness/tmp.ts";
import { ageRegistry, deviceFetches, startPublishSetup, type PublishSetup } from "./_setup.ts";

const REPO = resolve(import.meta.dir, "../..");
const HOUR = 3_600_000;
let setup: PublishSetup;
let gw: GatewayHandle;
let v1: PublishResult;
let v2: PublishResult;

const gcArgs = () => [process.execPath, join(REPO, "gateway/main.ts"), "registry", "gc", "--data", gw.dataDir, "--untargeted"];

/** Its targets removed (retention or an operator), and all its content older than gc's grace period (1 hour). */
async function untarget(r: PublishResult): Promise<void> {
  for (const name of Object.keys(r.targets)) expect((await gw.adminFetch(`/admin/targets/${name}`, { method: "DELETE" })).status).toBe(200);
  ageRegistry(gw, 2 * HOUR);
}

/** Re-publishes the checkout as the next version, gc running each time publish has pushed an app. */
async function republishUnderGc(after: PublishResult, opts: Partial<PublishOptions> = {}) {
  const gcRuns: { code: number; stdout: string; stderr: string }[] = [];
  const again = await publish({
    ...setup.opts(),
    version: after.version + 1,
    ...opts,
    log: (line) => {
      // The app is pushed, its target not signed yet: gc runs now, and publish waits for it.
      if (!/^app [^:]+: pushed /.test(line)) return;
      const r = Bun.spawnSync(gcArgs(), { stdout: "pipe", stderr: "pipe" });
      gcRuns.push({ code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() });
    },
  });
  // The setup: nothing built or uploaded for the images.
  expect(again.images.find((i) => i.name === "simple-app")?.reused).toBe(true);
  // A device resolves and fetches the new target, on both platforms of the nginx index.
  await deviceFetches(gw, again);
  expect(gcRuns.length).toBe(v1.apps.length);
  for (const r of gcRuns) {
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toStartWith("removed ");
  }
  return again;
}

beforeAll(async () => {
  setup = await startPublishSetup();
  gw = setup.gw;
  v1 = await publish(setup.opts());
  await untarget(v1);
}, 300_000);

afterAll(async () => {
  await setup?.stop();
}, 180_000);

describe("gateway registry gc --untargeted during a re-publish of an untargeted version", () => {
  test("gc between the push and the signing of the target removes nothing the new target needs", async () => {
    v2 = await republishUnderGc(v1);
    // The same content as the first publish.
    expect(v2.apps.map((a) => a.uri)).toEqual(v1.apps.map((a) => a.uri));

    // Now that the target names it all, gc has nothing to remove even without a grace period.
    const after = await run([...gcArgs(), "--grace", "0s"], { allowFail: true });
    expect(after.stderr).toBe("");
    expect(after.stdout).toStartWith("removed 0 manifests no target reaches and 0 blobs");
  }, 300_000);

  test("the same with the gateway's registry named in another spelling (--registry 127.1:PORT for --server https://127.0.0.1:PORT)", async () => {
    await untarget(v2);
    const alias = gw.host.replace(/^127\.0\.0\.1:/, "127.1:");
    const v3 = await republishUnderGc(v2, { registry: alias });
    // Pinned under --server's spelling: a device knows the gateway's registry by that host alone
    // (fioup sends its certificate and trusts the gateway's CA only there).
    // deviceFetches, in republishUnderGc, fetched the services' images from that host only.
    expect(v3.apps.map((a) => a.uri.split("/")[0])).toEqual(v3.apps.map(() => gw.host));
  }, 300_000);
});
