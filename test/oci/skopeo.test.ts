import { afterAll, beforeAll, describe, expect, test, setDefaultTimeout } from "bun:test";
import { join } from "node:path";
import { startDockerRegistry, type DockerRegistryHandle } from "../harness/docker-registry.ts";
import { writeOciLayout } from "../harness/images.ts";
import { run, tempDir } from "../harness/tmp.ts";
import { BlobStore, copyLayoutToRegistry, copyRegistryToLayout, OciLayout, pullImage, RegistryClient, sha256 } from "../../lib/oci/index.ts";

// bunfig.toml's [test] timeout is not applied by bun 1.4.5: these tests start real services.
setDefaultTimeout(60_000);

let reg: DockerRegistryHandle;
let client: RegistryClient;

beforeAll(async () => {
  reg = await startDockerRegistry();
  client = new RegistryClient({ registry: reg.host, scheme: "http" });
});
afterAll(async () => {
  await reg?.stop();
});

const skopeo = (...args: string[]) => run(["skopeo", "--insecure-policy", ...args], { env: { HOME: process.env.HOME ?? "/tmp" } });

describe("skopeo interop", () => {
  test("an index skopeo pushed from an OCI layout pulls with lib/oci per platform, digests equal", async () => {
    const dir = await tempDir("oci-src-");
    const layout = await writeOciLayout(dir, { platforms: ["linux/amd64", "linux/arm64"], files: { "/s": "skopeo" } });
    await skopeo("copy", "--all", "--dest-tls-verify=false", `oci:${dir}:latest`, `docker://${reg.host}/t/skopeo:1`);
    const raw = await skopeo("inspect", "--raw", "--tls-verify=false", `docker://${reg.host}/t/skopeo:1`);
    expect(sha256(raw.stdout)).toBe(layout.digest);

    const store = new BlobStore(await tempDir("oci-store-"));
    const arm = await pullImage(client, "t/skopeo", "1", store, { platform: { os: "linux", architecture: "arm64" } });
    expect(arm.indexDigest).toBe(layout.digest);
    expect(arm.manifestDigest).toBe(layout.images[1]!.manifestDigest);
    expect(arm.configDigest).toBe(layout.images[1]!.configDigest);
    const amd = await pullImage(client, "t/skopeo", "1", store, { platform: { os: "linux", architecture: "amd64" } });
    expect(amd.manifestDigest).toBe(layout.images[0]!.manifestDigest);
    // the shared layer came once
    expect(amd.fetched).toBe(layout.images[0]!.config.length);
  });

  test("a layout written by copyRegistryToLayout is read by skopeo, and one skopeo writes is pushed by copyLayoutToRegistry", async () => {
    const dir = await tempDir("oci-src-");
    const layout = await writeOciLayout(dir, { platforms: ["linux/amd64", "linux/arm64"], files: { "/r": "round" } });
    await skopeo("copy", "--all", "--dest-tls-verify=false", `oci:${dir}:latest`, `docker://${reg.host}/t/round:1`);

    const ours = await tempDir("oci-ours-");
    const r = await copyRegistryToLayout(client, "t/round", "1", ours);
    expect(r.digest).toBe(layout.digest);
    const inspected = JSON.parse((await skopeo("inspect", "--raw", `oci:${ours}:1`)).stdout);
    expect(inspected.manifests.length).toBe(2);
    const cfg = JSON.parse((await skopeo("inspect", "--config", "--override-arch", "arm64", `oci:${ours}:1`)).stdout);
    expect(cfg.architecture).toBe("arm64");
    expect((await (await OciLayout.open(ours)).resolve("1")).digest).toBe(layout.digest);

    // single platform copy records the platform's manifest
    const single = await tempDir("oci-single-");
    const s = await copyRegistryToLayout(client, "t/round", "1", single, { platform: { os: "linux", architecture: "arm64" }, refName: "arm" });
    expect(s.digest).toBe(layout.images[1]!.manifestDigest);
    await skopeo("copy", "--dest-tls-verify=false", `oci:${single}:arm`, `docker://${reg.host}/t/single:arm`);

    const theirs = await tempDir("oci-theirs-");
    await skopeo("copy", "--all", "--src-tls-verify=false", `docker://${reg.host}/t/round:1`, `oci:${theirs}:x`);
    const pushed = await copyLayoutToRegistry(theirs, client, "t/round2", "v1", { refName: "x" });
    expect(pushed.digest).toBe(layout.digest);
    const again = await copyLayoutToRegistry(theirs, client, "t/round2", "v2");
    expect(again.uploadedBytes).toBe(0);
    expect((await client.headManifest("t/round2", "v2"))?.digest).toBe(layout.digest);
  });
});
