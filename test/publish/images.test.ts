/**
 * The registry side of publish against a real docker-registry (distribution
 * 2.8): third-party images copied byte-exact, a docker-built image pushed from
 * `docker save` that a Docker engine then pulls by digest with the image ID
 * we computed, and re-pushes that send nothing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { parseManifest } from "../../lib/oci/manifest.ts";
import { RegistryClient } from "../../lib/oci/registry-client.ts";
import { copyImage } from "../../gateway/publish/copy-image.ts";
import { dockerBuild, dockerSave } from "../../gateway/publish/docker.ts";
import { ensureBlobs, ensureManifest, PushStats, type Destination } from "../../gateway/publish/transfer.ts";
import { readDockerArchiveImage } from "../../lib/oci/docker-archive.ts";
import { startDockerd, type DockerdHandle } from "../harness/dockerd.ts";
import { startDockerRegistry, type DockerRegistryHandle } from "../harness/docker-registry.ts";
import { tempDir } from "../harness/tmp.ts";
import { FIXTURES, loadBaseImage, pushUpstreamNginx } from "./_setup.ts";

let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let factory: DockerRegistryHandle;
let upstreamIndex: string;

beforeAll(async () => {
  [dockerd, upstream, factory] = await Promise.all([startDockerd(), startDockerRegistry(), startDockerRegistry()]);
  await loadBaseImage(dockerd);
  upstreamIndex = await pushUpstreamNginx(upstream);
}, 180_000);

afterAll(async () => {
  await Promise.all([upstream?.stop(), factory?.stop(), dockerd?.stop()]);
}, 180_000);

async function dest(dryRun = false): Promise<Destination> {
  return {
    client: new RegistryClient({ registry: factory.host, scheme: "http" }),
    stats: new PushStats(),
    dryRun,
    tmpDir: await tempDir("publish-tmp-"),
  };
}

describe("copyImage", () => {
  test("copies a whole index byte-exact, then a second copy pushes nothing", async () => {
    const src = new RegistryClient({ registry: upstream.host, scheme: "http" });
    const d = await dest();
    const { manifest: m, platforms } = await copyImage(src, "library/nginx", "alpine", d, "main/nginx");
    expect(m.digest).toBe(upstreamIndex);
    expect(platforms.map((p) => p.architecture).sort()).toEqual(["amd64", "arm64"]);
    expect(d.stats.bytesPushed).toBeGreaterThan(0);
    const got = await d.client.getManifest("main/nginx", upstreamIndex);
    expect(parseManifest(got.bytes).kind).toBe("index");

    const again = await dest();
    await copyImage(src, "library/nginx", "alpine", again, "main/nginx");
    expect(again.stats.bytesPushed).toBe(0);
    expect(again.stats.blobsPushed).toBe(0);
  });

  test("with a platform, pins that platform's manifest", async () => {
    const src = new RegistryClient({ registry: upstream.host, scheme: "http" });
    const d = await dest();
    const { manifest: m, platforms } = await copyImage(src, "library/nginx", "alpine", d, "main/nginx-arm", { platform: { os: "linux", architecture: "arm64" } });
    expect(platforms).toEqual([{ os: "linux", architecture: "arm64" }]);
    const p = parseManifest(m.bytes);
    expect(p.kind).toBe("manifest");
    const cfg = JSON.parse(new TextDecoder().decode(await d.client.getBlobBytes("main/nginx-arm", (p as { manifest: { config: { digest: string } } }).manifest.config.digest)));
    expect(cfg.architecture).toBe("arm64");
  });

  test("a dry run resolves the digest and writes nothing", async () => {
    const src = new RegistryClient({ registry: upstream.host, scheme: "http" });
    const d = await dest(true);
    const { manifest: m } = await copyImage(src, "library/nginx", "alpine", d, "main/never");
    expect(m.digest).toBe(upstreamIndex);
    expect(await d.client.headManifest("main/never", upstreamIndex)).toBeUndefined();
  });

  test("a missing image is an error from the source registry", async () => {
    const src = new RegistryClient({ registry: upstream.host, scheme: "http" });
    await expect(copyImage(src, "library/nginx", "nope", await dest(), "main/nginx")).rejects.toThrow(/404|MANIFEST_UNKNOWN/);
  });
});

describe("docker build + docker save push", () => {
  test("a Docker engine pulls the pushed image by digest and gets the same image ID", async () => {
    const tag = `${factory.host}/main/simple-app:test1`;
    await dockerBuild(join(FIXTURES, "simple-app"), tag, { env: { ...process.env, ...dockerd.env } });
    const work = await tempDir("save-");
    await dockerSave(tag, join(work, "img.tar"), { env: { ...process.env, ...dockerd.env } });
    const img = await readDockerArchiveImage(join(work, "img.tar"), { tmpDir: work });
    const imageId = (await dockerd.docker("image", "inspect", "-f", "{{.Id}}", tag)).trim();
    expect(img.configDigest).toBe(imageId);

    const d = await dest();
    await ensureBlobs(d, "main/simple-app", [img.manifest.config, ...img.manifest.layers], img.source);
    await ensureManifest(d, "main/simple-app", { bytes: img.manifestBytes, mediaType: img.manifest.mediaType!, digest: img.digest }, "test1");
    await img.close();
    expect(d.stats.bytesPushed).toBeGreaterThan(0);

    // Same save again: the same digests (fixed gzip settings), nothing pushed.
    await dockerSave(tag, join(work, "img2.tar"), { env: { ...process.env, ...dockerd.env } });
    const img2 = await readDockerArchiveImage(join(work, "img2.tar"), { tmpDir: work });
    expect(img2.digest).toBe(img.digest);
    const d2 = await dest();
    await ensureBlobs(d2, "main/simple-app", [img2.manifest.config, ...img2.manifest.layers], img2.source);
    await ensureManifest(d2, "main/simple-app", { bytes: img2.manifestBytes, mediaType: img2.manifest.mediaType!, digest: img2.digest }, "test1");
    await img2.close();
    expect(d2.stats.bytesPushed).toBe(0);

    await dockerd.docker("rmi", tag);
    const byDigest = `${factory.host}/main/simple-app@${img.digest}`;
    await dockerd.docker("pull", byDigest);
    expect((await dockerd.docker("image", "inspect", "-f", "{{.Id}}", byDigest)).trim()).toBe(imageId);
    await dockerd.docker("rmi", byDigest);
  });

  test("a build that fails leaves no container behind", async () => {
    const marker = `failing-step-${crypto.randomUUID().slice(0, 8)}`;
    const dir = await tempDir("failing-build-");
    await Bun.write(join(dir, "Dockerfile"), `FROM fixtures/busybox:latest\nRUN echo ${marker} && false\n`);
    const env = { ...process.env, ...dockerd.env };
    await expect(dockerBuild(dir, `${factory.host}/main/failing:test`, { env })).rejects.toThrow(/Cannot build/);
    const left = (await dockerd.docker("ps", "-a", "--no-trunc", "--format", "{{.Command}}")).split("\n").filter((c) => c.includes(marker));
    expect(left).toEqual([]);
  });
});
