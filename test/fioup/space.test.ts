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
import { smallDockerRig, type SmallDockerRig } from "./_small-docker.ts";

const APP = `space${process.pid}`;
const MiB = 1 << 20;
let rig: SmallDockerRig;

beforeAll(async () => {
  rig = await smallDockerRig({ app: APP, repo: `space/app${process.pid}`, sizeMiB: 160 });
}, 180_000);

afterAll(async () => {
  await rig?.stop();
});

describe("space on Docker's data root", () => {
  test("an update larger than the whole filesystem is refused before its layers are downloaded, and marked bad the second time", async () => {
    const fs = await statfs(rig.dockerd.dataRoot);
    const layer = await rig.publishWithZeros(Number(fs.blocks) * Number(fs.bsize));
    expect(layer.gz.length).toBeLessThan(MiB); // compresses to nearly nothing: only its unpacked size is too big
    const r = await rig.device.fioup("update");
    expect(r.code, r.stderr).toBe(41);
    expect(r.stderr).toContain("Docker's data root");
    expect(r.stderr).toContain(rig.dockerd.dataRoot);
    expect(r.stderr).toContain("would not fit even on the empty filesystem");
    expect((await rig.device.blobs()).has(layer.digest)).toBe(false);
    expect(await rig.device.ingestBytes()).toBe(0);
    const st = await rig.device.fioup("status", "--no-apps");
    expect(st.json.current.name).toBe("amd64-linux-1");

    // It cannot heal: the second identical refusal marks the target bad, and polling stops trying.
    expect((await rig.device.fioup("update")).code).toBe(41);
    expect((await rig.device.fioup("update")).code).toBe(3);
    const after = await rig.device.fioup("status", "--no-apps");
    expect(after.json.badTargets).toContain(`amd64-linux-${rig.version}`);
  }, 180_000);

  test("an update that lacks free space today is refused before download, not marked bad, and goes through once there is room", async () => {
    // Something else on the device holds 48 MiB of the filesystem for now.
    const filler = join(rig.dockerd.dataRoot, "filler.bin");
    writeFileSync(filler, new Uint8Array(48 * MiB).fill(1));
    try {
      const layer = await rig.publishWithZeros(Math.floor((await rig.dockerAvailable()) + 16 * MiB));
      for (let i = 0; i < 3; i++) {
        const r = await rig.device.fioup("update");
        expect(r.code, r.stderr).toBe(41);
        expect(r.stderr).not.toContain("even on the empty filesystem");
      }
      expect((await rig.device.blobs()).has(layer.digest)).toBe(false);
      expect((await rig.device.fioup("status", "--no-apps")).json.badTargets).not.toContain(`amd64-linux-${rig.version}`);
    } finally {
      rmSync(filler, { force: true });
    }
    // Room again: the next plain update (no target named) installs it.
    const r = await rig.device.fioup("update");
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.toTarget).toBe(`amd64-linux-${rig.version}`);
  }, 180_000);

  test("an update that fits with 10% to spare goes through", async () => {
    const layer = await rig.publishWithZeros(Math.floor(0.9 * (await rig.dockerAvailable())) - 2 * MiB);
    const r = await rig.device.fioup("update");
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.toTarget).toBe(`amd64-linux-${rig.version}`);
    expect((await rig.device.blobs()).has(layer.digest)).toBe(true);
    const st = await rig.device.fioup("status");
    expect(st.json.apps[APP].state).toBe("healthy");
  }, 180_000);
});
