/**
 * Image deltas on a preloaded device's first update: `preload` bakes an app whose image has a
 * ~25 MB layer of real files (shared libraries) into the device's store; the device registers
 * (no update yet, so no plan in its DB names those layers). Version 2 changes one 1 MB file:
 * the first online update still fetches a delta for that layer, with the preloaded layer as
 * its base (bytes counted by the gateway's registry), and the device runs the new image.
 * Then the store loses that layer (pruned; the engine still runs the image): version 3's delta
 * is rebuilt from the layer the Docker Engine exports, checked against its diff_id.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { DeviceBlobStore } from "../../lib/device/store.ts";
import { servedBytes, startGateway, type GatewayHandle } from "../harness/gateway.ts";
import type { BuiltImage, BusyboxImageOptions, ImageFile } from "../harness/images.ts";
import {
  Device, Publisher, asTestGateway, freePort, httpGet, httpdCompose, pushImageDetailed, randomBytes, startDockerRegistry, startDockerd,
  type DockerRegistryHandle, type DockerdHandle, type TestGateway,
} from "../fioup/_setup.ts";
import { factoryConfig, preload, preloadConfig } from "../preload/_setup.ts";
import { downloadReport, fileNear, realFilePaths, realFiles, realFilesImage } from "./_real-files.ts";

const APP = `deltapre${process.pid}`;
const REPO = "test/deltas-preloaded";
let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gwHandle: GatewayHandle;
let gw: TestGateway;
let device: Device;
let pub: Publisher;
let port: number;
let files: Record<string, ImageFile>;
let paths: string[];
let uuid: string;
let v2: BuiltImage;

const image = (body: string, changes: Record<string, ImageFile>): BusyboxImageOptions => realFilesImage(files, body, changes);

beforeAll(async () => {
  [dockerd, upstream, gwHandle] = await Promise.all([startDockerd(), startDockerRegistry(), startGateway({ args: ["--polling-seconds", "1"] })]);
  gw = asTestGateway(gwHandle);
  device = await Device.create(dockerd);
  port = await freePort();
  paths = realFilePaths(25_000_000);
  files = realFiles(paths);
  const { ref } = await pushImageDetailed(upstream, REPO, "v1", image("v1", {}));
  pub = await Publisher.create(gw, upstream, { [`${APP}/docker-compose.yml`]: httpdCompose(ref, port) });
  await pub.publish(1);
}, 180_000);

afterAll(async () => {
  await device?.cleanup([APP]).catch(() => undefined);
  await Promise.all([gwHandle?.stop(), upstream?.stop()]);
  await dockerd?.stop();
});

describe("image deltas on a preloaded device", () => {
  test("the first update after preload fetches a delta from the preloaded layer and runs the new image", async () => {
    const fc = await factoryConfig(preloadConfig(APP));
    const pre = await preload([
      "--factory-config", fc, "--ref", "refs/heads/master", "--server", gw.url, "--token", gw.adminToken,
      "--hwid", "amd64-linux", "--out", device.root, "--format", "dir", "--json",
    ]);
    expect(pre.code, pre.stderr).toBe(0);
    uuid = await device.register(gw);
    expect(await httpGet(port)).toBe("v1"); // the preloaded app, from the store
    // No update yet: the DB holds no plan that could name a base.
    expect((await device.fioup("status", "--no-apps")).json.current.name).toBe("amd64-linux-1");
    expect(existsSync(join(device.sotaDir, "preload/target.json"))).toBe(true);

    const changed = `/data/lib/${fileNear(paths, 1 << 20)}`;
    const pushed = await pushImageDetailed(upstream, REPO, "v2", image("v2", { [changed]: randomBytes(1 << 20) }));
    const ref = pushed.ref;
    v2 = pushed.image;
    await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(ref, port) });
    await pub.publish(2);
    const big = v2.layers.at(-1)!;
    expect(big.tar.byteLength).toBeGreaterThan(25_000_000);

    const before = await servedBytes(gwHandle, `device:${uuid}`);
    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(0);
    expect(await httpGet(port)).toBe("v2");
    const after = await servedBytes(gwHandle, `device:${uuid}`);
    const deltaBytes = after.delta - before.delta;
    const blobBytes = after.blob - before.blob;
    console.error(`preloaded v1 -> v2: layer ${big.gz.byteLength} B gzip (${big.tar.byteLength} B tar); registry served ${deltaBytes} B of delta, ${blobBytes} B of full blobs`);
    expect(deltaBytes).toBeGreaterThan(1 << 20); // the new file is random: it travels whole
    expect(deltaBytes * 4).toBeLessThan(big.gz.byteLength);
    expect(blobBytes).toBeLessThan(64 * 1024); // config and bundle only: no full layer

    const report = await downloadReport(gw, uuid, 2);
    expect(report.deltaLayers).toBe(1);
    expect(report.deltas[0]!.layer).toBe(big.digest);
  }, 180_000);

  test("a layer the store lost but the Docker Engine holds is a delta base, exported and checked against its diff_id", async () => {
    const base = v2.layers.at(-1)!;
    const store = new DeviceBlobStore(device.storeDir);
    const stored = store.holder(base.digest); // v2's layer came as a delta: its uncompressed tar
    expect(stored).toBeDefined();
    rmSync(store.path(stored!));
    rmSync(`${device.storeDir}/layers/sha256/${base.digest.slice(7)}`, { force: true });
    expect(store.has(base.digest)).toBe(false);

    const changed = `/data/lib/${fileNear(paths, 1 << 20)}`;
    const { ref, image: v3 } = await pushImageDetailed(upstream, REPO, "v3", image("v3", { [changed]: randomBytes(1 << 20) }));
    await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(ref, port) });
    await pub.publish(3);
    const big = v3.layers.at(-1)!;
    const before = await servedBytes(gwHandle, `device:${uuid}`);
    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(0);
    expect(await httpGet(port)).toBe("v3");
    const line = r.stderr.split("\n").find((l) => l.includes("exported from the Docker Engine"));
    expect(line).toContain(`delta base ${base.digest}`);
    const after = await servedBytes(gwHandle, `device:${uuid}`);
    expect((after.delta - before.delta) * 4).toBeLessThan(big.gz.byteLength);
    expect(after.blob - before.blob).toBeLessThan(64 * 1024); // no full layer
    const report = await downloadReport(gw, uuid, 3);
    expect(report.deltas[0]).toMatchObject({ layer: big.digest, from: base.digest });
  }, 180_000);
});
