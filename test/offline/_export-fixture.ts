/**
 * What the export tests (export-space, export-progress) start from: a gateway with targets 1 and 2
 * of one app whose image is one big layer of real files (shared libraries, so it compresses as a
 * real layer does), version 2 changing one 1 MB file: `--from 1` carries that layer as a delta of
 * about 1 MiB, a whole bundle carries it all. No device: these tests look at the export only.
 *
 * @module
 */
import { join } from "node:path";
import { fileNear, realFilePaths, realFiles, realFilesImage } from "../deltas/_real-files.ts";
import {
  freePort, httpdCompose, Publisher, pushImageDetailed, randomBytes, ROOT, startDockerRegistry, startTestGateway, type DockerRegistryHandle, type TestGateway,
} from "../fioup/_setup.ts";

export interface TwoVersions {
  gw: TestGateway;
  upstream: DockerRegistryHandle;
  /** `gateway export --target 2` into `out` on this gateway (hwid amd64-linux), with `args`: the command line. */
  exportCmd(out: string, args?: string[]): string[];
  stop(): Promise<void>;
}

/** Starts the gateway and its upstream registry, and publishes versions 1 and 2 (`layerBytes` of real files). */
export async function twoVersions(name: string, layerBytes: number): Promise<TwoVersions> {
  const [upstream, gw] = await Promise.all([startDockerRegistry(), startTestGateway()]);
  const app = `${name}${process.pid}`;
  const repo = `test/${name}`;
  const port = await freePort();
  const paths = realFilePaths(layerBytes);
  const files = realFiles(paths);
  const v1 = await pushImageDetailed(upstream, repo, "v1", realFilesImage(files, "v1"));
  const pub = await Publisher.create(gw, upstream, { [`${app}/docker-compose.yml`]: httpdCompose(v1.ref, port) });
  await pub.publish(1);
  const v2 = await pushImageDetailed(upstream, repo, "v2", realFilesImage(files, "v2", { [`/data/lib/${fileNear(paths, 1 << 20)}`]: randomBytes(1 << 20) }));
  await pub.commit({ [`${app}/docker-compose.yml`]: httpdCompose(v2.ref, port) });
  await pub.publish(2);
  return {
    gw,
    upstream,
    exportCmd: (out, args = []) => [process.execPath, join(ROOT, "gateway/main.ts"), "export", "--data", gw.dataDir, "--target", "2", "--hwid", "amd64-linux", "--out", out, ...args],
    stop: async () => void (await Promise.all([gw.stop(), upstream.stop()])),
  };
}
