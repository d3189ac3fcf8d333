/**
 * What the offline tests share: `gateway export` run as an operator runs it on the gateway host,
 * owner drop-ins that cut a device off from its gateway (or give it an expiry grace), and the rig
 * most of them start from (a device on v1 beside its own services).
 *
 * @module
 */
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { BuiltImage, BusyboxImageOptions, ImageFile } from "../harness/images.ts";
import { run, tempDir } from "../harness/tmp.ts";
import { deviceRig, Device, freePort, httpdCompose, httpdImage, pushImageDetailed, randomBytes, ROOT, type DeviceRig, type TestGateway } from "../fioup/_setup.ts";
import { fileNear, realFilesImage } from "../deltas/_real-files.ts";

/** `gateway export` on the gateway host (its data dir names the gateway and the admin token); returns its stderr. */
export async function gatewayExport(gw: TestGateway, o: { target: number; from?: number; hwid: string; out: string; args?: string[] }): Promise<string> {
  const r = await run(
    [process.execPath, join(ROOT, "gateway/main.ts"), "export", "--data", gw.dataDir, "--target", String(o.target), ...(o.from ? ["--from", String(o.from)] : []),
      "--hwid", o.hwid, "--out", o.out, ...(o.args ?? [])],
    { cwd: ROOT },
  );
  return r.stderr + r.stdout; // the progress, then the summary
}

/** An owner drop-in on the device (later files win); `undefined` removes it. */
export function dropIn(device: Device, name: string, toml: string | undefined): void {
  const dir = join(device.root, "etc/sota/conf.d");
  mkdirSync(dir, { recursive: true });
  if (toml === undefined) rmSync(join(dir, name), { force: true });
  else writeFileSync(join(dir, name), toml);
}

/** The drop-in that leaves the device no route to its gateway: its URL is a loopback port nobody listens on. */
export const OFFLINE_DROP_IN = "90-offline.toml";
export const offlineToml = (closedPort: number) => `[tls]\nserver = "https://127.0.0.1:${closedPort}"\n`;

/** A bundle's index.json, parsed. */
export const bundleIndex = (dir: string) => JSON.parse(readFileSync(join(dir, "index.json"), "utf8"));

/** A copy of the bundle at `from`, in `dir`, whose largest layer has one byte flipped (same size): bit rot on a stick. */
export function rottedCopy(from: string, dir: string): { dir: string; digest: string } {
  cpSync(from, dir, { recursive: true });
  const layer = bundleIndex(dir).bundle.blobs.filter((b: { kind: string }) => b.kind === "layer").sort((a: { size: number }, b: { size: number }) => b.size - a.size)[0];
  const file = join(dir, "blobs/sha256", layer.digest.slice(7));
  const bytes = readFileSync(file);
  bytes[bytes.length >> 1]! ^= 0x01;
  writeFileSync(file, bytes);
  return { dir, digest: layer.digest };
}

/** {@link deviceRig} with a folder for bundles. */
export interface OfflineRig extends DeviceRig {
  bundles: string;
}

/** The start the offline tests share: {@link deviceRig}, and a bundles folder (`tmp`: its prefix) removed by `stop`. */
export async function offlineRig(o: { app: string; repo: string; body: string; tmp: string; image?: BusyboxImageOptions }): Promise<OfflineRig> {
  const [rig, bundles] = await Promise.all([deviceRig(o), tempDir(o.tmp)]);
  return {
    ...rig,
    bundles,
    async stop() {
      await rig.stop();
      rmSync(bundles, { recursive: true, force: true });
    },
  };
}

/**
 * Publishes `version` of the rig's app with an httpd image answering `body` (tagged `v<version>`
 * in the rig's repository), for `hwids` (default: the rig's hardware id).
 */
export async function publishHttpd(rig: DeviceRig, version: number, body: string, hwids: string[] = []): Promise<void> {
  const { ref } = await pushImageDetailed(rig.upstream, rig.repo, `v${version}`, httpdImage(body));
  await rig.pub.commit({ [`${rig.app}/docker-compose.yml`]: httpdCompose(ref, rig.port) });
  await rig.pub.publish(version, hwids.flatMap((h) => ["--hwid", h]));
}

/** Cuts the device off from its gateway ({@link OFFLINE_DROP_IN}): bundles are then its only way to update. */
export async function goOffline(device: Device): Promise<void> {
  dropIn(device, OFFLINE_DROP_IN, offlineToml(await freePort()));
}

/**
 * Target 2 of a rig whose v1 is `realFilesImage(files, "v1")`: the same big layer of real files
 * with 1 MiB of one file changed, published, and exported from 1 to 2 as `bundles/deltas` (the
 * layer as a delta) and `bundles/whole` (--no-deltas). Returns v2's image and the delta export's output.
 */
export async function realFilesV2(rig: OfflineRig, paths: string[], files: Record<string, ImageFile>, hwid: string): Promise<{ image: BuiltImage; exportLog: string }> {
  const changed = `/data/lib/${fileNear(paths, 1 << 20)}`;
  const pushed = await pushImageDetailed(rig.upstream, rig.repo, "v2", realFilesImage(files, "v2", { [changed]: randomBytes(1 << 20) }));
  await rig.pub.commit({ [`${rig.app}/docker-compose.yml`]: httpdCompose(pushed.ref, rig.port) });
  await rig.pub.publish(2);
  const [exportLog] = await Promise.all([
    gatewayExport(rig.gw, { target: 2, from: 1, hwid, out: join(rig.bundles, "deltas") }),
    gatewayExport(rig.gw, { target: 2, from: 1, hwid, out: join(rig.bundles, "whole"), args: ["--no-deltas"] }),
  ]);
  return { image: pushed.image, exportLog };
}
