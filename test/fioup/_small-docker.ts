/**
 * A device beside its own dockerd whose data root is a small loop filesystem (fioup's blob store
 * elsewhere), on v1 of a one-service app that sleeps: for the tests of space on Docker's data
 * root. Each later version adds an image layer of zero bytes, which compresses to almost nothing
 * and unpacks to its full size there.
 *
 * @module
 */
import { statfs } from "node:fs/promises";
import type { BuiltLayer } from "../harness/images.ts";
import { startLoopDockerd, type LoopDockerdHandle } from "../harness/loop-dockerd.ts";
import { Device, Publisher, pushImageDetailed, startDockerRegistry, startTestGateway, type DockerRegistryHandle, type TestGateway } from "./_setup.ts";

export interface SmallDockerRig {
  dockerd: LoopDockerdHandle;
  upstream: DockerRegistryHandle;
  gw: TestGateway;
  device: Device;
  /** The version last published. */
  readonly version: number;
  /** Publishes the next version, its image with an extra layer of `zeros` zero bytes (none for 0); returns that layer. */
  publishWithZeros(zeros: number): Promise<BuiltLayer>;
  /** Bytes Docker's filesystem has above fioup's default 95% watermark. */
  dockerAvailable(): Promise<number>;
  stop(): Promise<void>;
}

/** Starts the three servers, publishes v1 (no extra layer) and updates a registered device to it. */
export async function smallDockerRig(o: { app: string; repo: string; sizeMiB: number }): Promise<SmallDockerRig> {
  const [dockerd, upstream, gw] = await Promise.all([startLoopDockerd({ sizeMiB: o.sizeMiB }), startDockerRegistry(), startTestGateway()]);
  let pub: Publisher | undefined;
  let device: Device | undefined;
  const rig: SmallDockerRig = {
    dockerd,
    upstream,
    gw,
    get device() {
      return device!;
    },
    version: 0,
    async publishWithZeros(zeros) {
      const version = rig.version + 1;
      const { ref, image } = await pushImageDetailed(upstream, o.repo, `v${version}`, {
        cmd: ["sleep", "3600"],
        layers: [{ "/v.txt": `v${version}` }, ...(zeros ? [{ "/zeros.bin": new Uint8Array(zeros) }] : [])],
      });
      const files = { [`${o.app}/docker-compose.yml`]: `services:\n  main:\n    image: ${ref}\n    network_mode: none\n    stop_grace_period: 1s\n` };
      if (pub) await pub.commit(files);
      else pub = await Publisher.create(gw, upstream, files);
      await pub.publish(version);
      (rig as { version: number }).version = version;
      return image.layers.at(-1)!;
    },
    async dockerAvailable() {
      const fs = await statfs(dockerd.dataRoot);
      return Number(fs.bavail) * Number(fs.bsize) - 0.05 * Number(fs.blocks) * Number(fs.bsize);
    },
    async stop() {
      await device?.cleanup([o.app]).catch(() => {});
      await Promise.all([gw.stop(), upstream.stop()]);
      await dockerd.stop();
    },
  };
  try {
    await rig.publishWithZeros(0);
    device = await Device.create(dockerd);
    await device.register(gw);
    const r = await device.fioup("update");
    if (r.code !== 0) throw new Error(`v1 update failed: ${r.stderr}`);
  } catch (e) {
    await rig.stop();
    throw e;
  }
  return rig;
}
