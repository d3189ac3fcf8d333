/**
 * The space check counts real sizes on the filesystem that receives them:
 * with Docker's data root on a small filesystem (the blob store elsewhere), an
 * update whose layers would not fit unpacked is refused before its layers are
 * downloaded, even though they compress to almost nothing; one that fits with
 * 10% to spare goes through.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { statfs } from "node:fs/promises";
import { join } from "node:path";
import { startLoopDockerd, type LoopDockerdHandle } from "../harness/loop-dockerd.ts";
import { Device, Publisher, pushImageDetailed, startDockerRegistry, startTestGateway, type DockerRegistryHandle, type TestGateway } from "./_setup.ts";

const APP = `space${process.pid}`;
const REPO = `space/app${process.pid}`;
const MiB = 1 << 20;
let dockerd: LoopDockerdHandle;
let upstream: DockerRegistryHandle;
let gw: TestGateway;
let device: Device;
let pub: Publisher;
let version = 0;

/** A one-service app with no network that sleeps, on an image with an extra layer of `zeros` zero bytes. */
async function publishWithZeros(zeros: number) {
  version++;
  const { ref, image } = await pushImageDetailed(upstream, REPO, `v${version}`, {
    cmd: ["sleep", "3600"],
    layers: [{ "/v.txt": `v${version}` }, ...(zeros ? [{ "/zeros.bin": new Uint8Array(zeros) }] : [])],
  });
  const files = { [`${APP}/docker-compose.yml`]: `services:\n  main:\n    image: ${ref}\n    network_mode: none\n    stop_grace_period: 1s\n` };
  if (pub) await pub.commit(files);
  else pub = await Publisher.create(gw, upstream, files);
  await pub.publish(version);
  return image.layers.at(-1)!;
}

/** Bytes Docker's filesystem has above fioup's default 95% watermark. */
async function dockerAvailable(): Promise<number> {
  const fs = await statfs(dockerd.dataRoot);
  return Number(fs.bavail) * Number(fs.bsize) - 0.05 * Number(fs.blocks) * Number(fs.bsize);
}

beforeAll(async () => {
  [dockerd, upstream, gw] = await Promise.all([startLoopDockerd({ sizeMiB: 160 }), startDockerRegistry(), startTestGateway()]);
  await publishWithZeros(0);
  device = await Device.create(dockerd);
  await device.register(gw);
  const r = await device.fioup("update");
  if (r.code !== 0) throw new Error(`v1 update failed: ${r.stderr}`);
}, 180_000);

afterAll(async () => {
  await device?.cleanup([APP]).catch(() => {});
  await Promise.all([gw?.stop(), upstream?.stop()]);
  await dockerd?.stop();
});

describe("space on Docker's data root", () => {
  test("an update larger than the whole filesystem is refused before its layers are downloaded, and marked bad the second time", async () => {
    const fs = await statfs(dockerd.dataRoot);
    const layer = await publishWithZeros(Number(fs.blocks) * Number(fs.bsize));
    expect(layer.gz.length).toBeLessThan(MiB); // compresses to nearly nothing: only its unpacked size is too big
    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(41);
    expect(r.stderr).toContain("Docker's data root");
    expect(r.stderr).toContain(dockerd.dataRoot);
    expect(r.stderr).toContain("would not fit even on the empty filesystem");
    expect((await device.blobs()).has(layer.digest)).toBe(false);
    expect(await device.ingestBytes()).toBe(0);
    const st = await device.fioup("status", "--no-apps");
    expect(st.json.current.name).toBe("amd64-linux-1");

    // It cannot heal: the second identical refusal marks the target bad, and polling stops trying.
    expect((await device.fioup("update")).code).toBe(41);
    expect((await device.fioup("update")).code).toBe(3);
    const after = await device.fioup("status", "--no-apps");
    expect(after.json.badTargets).toContain(`amd64-linux-${version}`);
  }, 180_000);

  test("an update that lacks free space today is refused before download, not marked bad, and goes through once there is room", async () => {
    // Something else on the device holds 48 MiB of the filesystem for now.
    const filler = join(dockerd.dataRoot, "filler.bin");
    writeFileSync(filler, new Uint8Array(48 * MiB).fill(1));
    try {
      const layer = await publishWithZeros(Math.floor((await dockerAvailable()) + 16 * MiB));
      for (let i = 0; i < 3; i++) {
        const r = await device.fioup("update");
        expect(r.code, r.stderr).toBe(41);
        expect(r.stderr).not.toContain("even on the empty filesystem");
      }
      expect((await device.blobs()).has(layer.digest)).toBe(false);
      expect((await device.fioup("status", "--no-apps")).json.badTargets).not.toContain(`amd64-linux-${version}`);
    } finally {
      rmSync(filler, { force: true });
    }
    // Room again: the next plain update (no target named) installs it.
    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.toTarget).toBe(`amd64-linux-${version}`);
  }, 180_000);

  test("an update that fits with 10% to spare goes through", async () => {
    const layer = await publishWithZeros(Math.floor(0.9 * (await dockerAvailable())) - 2 * MiB);
    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.toTarget).toBe(`amd64-linux-${version}`);
    expect((await device.blobs()).has(layer.digest)).toBe(true);
    const st = await device.fioup("status");
    expect(st.json.apps[APP].state).toBe("healthy");
  }, 180_000);
});
