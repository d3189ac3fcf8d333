/**
 * What the preload acceptance tests share: a real gateway (harness, restartable
 * on the same port), an upstream docker-registry holding busybox httpd images,
 * a containers repo published with `gateway publish` (the fioup tests'
 * Publisher), and `preload` run as the CLI a factory would run.
 *
 * @module
 */
import { join } from "node:path";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { tempDir } from "../harness/tmp.ts";
import {
  asTestGateway, collectCli, Device, freePort, httpdCompose, httpdImage, Publisher, pushImage, ROOT, startDockerd, startDockerRegistry,
  type CliResult, type DockerdHandle, type DockerRegistryHandle,
} from "../fioup/_setup.ts";

export { asTestGateway };

const BUN = process.execPath;

/** `gateway serve` with a one-second polling interval (devices check often). */
export const startTestGateway = (dataDir?: string) => startGateway({ dataDir, args: ["--polling-seconds", "1"] });

export type PreloadRun = CliResult;

/** Runs `preload <args>` (as `bun preload/main.ts`, or $PRELOAD_BIN). */
export async function preload(args: string[], env: Record<string, string> = {}): Promise<PreloadRun> {
  const cmd = process.env.PRELOAD_BIN ? [process.env.PRELOAD_BIN] : [BUN, join(ROOT, "preload/main.ts")];
  const p = Bun.spawn([...cmd, ...args], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe", cwd: ROOT });
  return await collectCli(p, `preload ${args.join(" ")}`, process.env.PRELOAD_TEST_VERBOSE);
}

/** Writes a factory-config.yml into a new temp dir; returns its path. */
export async function factoryConfig(text: string): Promise<string> {
  const p = join(await tempDir("factory-config-"), "factory-config.yml");
  await Bun.write(p, text);
  return p;
}

/** A factory-config.yml preloading `shortlist` (comma-separated) from master. */
export const preloadConfig = (shortlist?: string) =>
  `containers:\n  preloaded_images:\n    enabled: true\n${shortlist ? `    shortlist: "${shortlist}"\n` : ""}`;

/** Three httpd apps published as version 1, and a device (not registered) beside the shared dockerd: what a first boot starts from. */
export interface ThreeApps {
  dockerd: DockerdHandle;
  upstream: DockerRegistryHandle;
  /** The gateway `stop()` stops: a test that restarts it sets the new one here. */
  gw: GatewayHandle;
  pub: Publisher;
  device: Device;
  /** Each app's port on 127.0.0.1. */
  port: Record<string, number>;
  stop(): Promise<void>;
}

/** Publishes apps `names` (each a busybox httpd answering "<name> v1") as version 1, and makes a device. App names must be unique per test file: the dockerd is shared. */
export async function threeApps(names: [string, string, string]): Promise<ThreeApps> {
  const [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startTestGateway()]);
  const port: Record<string, number> = {};
  for (const n of names) port[n] = await freePort();
  const refs = await Promise.all(names.map((n) => pushImage(upstream, `test/${n}`, "v1", httpdImage(`${n} v1`))));
  const pub = await Publisher.create(asTestGateway(gw), upstream, Object.fromEntries(names.map((n, i) => [`${n}/docker-compose.yml`, httpdCompose(refs[i]!, port[n]!)])));
  await pub.publish(1);
  const device = await Device.create(dockerd);
  const rig: ThreeApps = {
    dockerd, upstream, gw, pub, device, port,
    async stop() {
      await device.cleanup(names).catch(() => {});
      await Promise.all([rig.gw.stop(), upstream.stop()]);
      await dockerd.stop();
    },
  };
  return rig;
}
