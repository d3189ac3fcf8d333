/**
 * `gateway registry gc --untargeted` while `gateway publish` re-publishes a version no target names
 * any more: its content is all in the registry, older than gc's grace period, so publish pushes
 * nothing new, and a gc that ran after publish pushed its apps but before it signed their target
 * removed what the new target needs (gc spares manifests by when they were last put, and a HEAD
 * that finds one changes nothing). publish now puts every manifest it reuses on the gateway's
 * registry again (gateway/publish/transfer.ts). Here gc runs, for real, each time publish has
 * pushed an app (the publish waits for it), then a device fetches the new target on both
 * platforms of the nginx index.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join, resolve } from "node:path";
import { publish, type PublishResult } from "../../gateway/publish/publish.ts";
import type { GatewayHandle } from "../harness/gateway.ts";
import { run } from "../harness/tmp.ts";
import { ageRegistry, deviceFetches, startPublishSetup, type PublishSetup } from "./_setup.ts";

const REPO = resolve(import.meta.dir, "../..");
const HOUR = 3_600_000;
let setup: PublishSetup;
let gw: GatewayHandle;
let v1: PublishResult;

const gcArgs = () => [process.execPath, join(REPO, "gateway/main.ts"), "registry", "gc", "--data", gw.dataDir, "--untargeted"];

beforeAll(async () => {
  setup = await startPublishSetup();
  gw = setup.gw;
  v1 = await publish(setup.opts());
  // Its targets removed (retention or an operator), and all its content older than gc's grace period (1 hour).
  for (const name of Object.keys(v1.targets)) expect((await gw.adminFetch(`/admin/targets/${name}`, { method: "DELETE" })).status).toBe(200);
  ageRegistry(gw, 2 * HOUR);
}, 300_000);

afterAll(async () => {
  await setup?.stop();
}, 180_000);

describe("gateway registry gc --untargeted during a re-publish of an untargeted version", () => {
  test("gc between the push and the signing of the target removes nothing the new target needs", async () => {
    const gcRuns: { code: number; stdout: string; stderr: string }[] = [];
    const again = await publish({
      ...setup.opts(),
      version: v1.version + 1,
      log: (line) => {
        // The app is pushed, its target not signed yet: gc runs now, and publish waits for it.
        if (!/^app [^:]+: pushed /.test(line)) return;
        const r = Bun.spawnSync(gcArgs(), { stdout: "pipe", stderr: "pipe" });
        gcRuns.push({ code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() });
      },
    });
    // The setup: the same content as the first publish, nothing built or uploaded for the images.
    expect(again.apps.map((a) => a.uri)).toEqual(v1.apps.map((a) => a.uri));
    expect(again.images.find((i) => i.name === "simple-app")?.reused).toBe(true);
    // A device resolves and fetches the new target, on both platforms of the nginx index.
    await deviceFetches(gw, again);
    expect(gcRuns.length).toBe(v1.apps.length);
    for (const r of gcRuns) {
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout).toStartWith("removed ");
    }

    // Now that the target names it all, gc has nothing to remove even without a grace period.
    const after = await run([...gcArgs(), "--grace", "0s"], { allowFail: true });
    expect(after.stderr).toBe("");
    expect(after.stdout).toStartWith("removed 0 manifests no target reaches and 0 blobs");
  }, 300_000);
});
