/**
 * Power cuts on the delta path: the real fioup (`bun fioup/main.ts update`, or $FIOUP_BIN) kills
 * itself with SIGKILL (fioup/fault.ts, `mid-blob`) while it downloads a layer's delta, and while
 * it rebuilds the layer from that delta (the rebuilt tar growing in the store's ingest dir). The
 * kill point is reached in-process at a byte offset, so no timing can make the test miss it; the
 * marker line fioup writes before dying says which blob it was in (the delta's digest, or the
 * layer's), and a run without that marker counts as "not tried", never as survived.
 *
 * The app's image has a ~25 MB layer of real files (shared libraries); each release changes one
 * 1 MB file of it, so the layer comes as a ~1 MB delta. After each cut:
 * - at once: every blob in the store hashes to its name, the layer is not in the store (neither
 *   under its digest, nor as a rebuilt tar, nor as an alias), and the delta is committed only if
 *   the cut came after its download;
 * - the next `fioup update` ends on the new target (status, the running image, what it serves),
 *   the layer still came as a delta (the update's EcuDownloadCompleted), every blob still hashes
 *   to its name, and the gateway served (its registry's byte counters for this device) no full
 *   layer and no delta byte the device had on disk: after a cut in the rebuild, zero delta bytes;
 *   after a cut in the download, at most the part of the delta not yet in its partial file.
 * Default (npm test): the cut in the rebuild; RELIABILITY_FULL=1: both.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseDigest } from "../../lib/oci/digest.ts";
import {
  Device, Publisher, ROOT, asTestGateway, deviceOnV1, freePort, httpGet, httpdCompose, pushImageDetailed, randomBytes, startDockerRegistry, startDockerd,
  type DockerRegistryHandle, type DockerdHandle, type TestGateway,
} from "../fioup/_setup.ts";
import { servedBytes, startGateway, type GatewayHandle } from "../harness/gateway.ts";
import type { BusyboxImageOptions, ImageFile } from "../harness/images.ts";
import { tempDir } from "../harness/tmp.ts";
import { downloadReport, fileNear, realFilePaths, realFiles, realFilesImage } from "../deltas/_real-files.ts";
import { FULL, Tally } from "./_tally.ts";

const tally = new Tally("power-cut");
const APP = `relDeltaCut${process.pid}`.toLowerCase();
const REPO = `rel/deltacut${process.pid}`;
const MiB = 1 << 20;

interface Cut {
  name: string;
  /** FIOUP_FAULT_OFFSET: the delta (~1 MB) crosses 256 KiB first; only the rebuilt tar (~26 MB) crosses 8 MiB. */
  offset: number;
  /** Where the marker must say the kill landed. */
  in: "delta" | "layer";
}
const ALL: Cut[] = [
  { name: "delta: mid-rebuild of the layer", offset: 8 * MiB, in: "layer" },
  { name: "delta: mid-download of the delta", offset: 256 * 1024, in: "delta" },
];
/** npm test: the rebuild cut (the delta's download is an ordinary resumed blob pull); RELIABILITY_FULL=1: both. */
const CUTS = FULL ? ALL : ALL.slice(0, 1);

let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gwh: GatewayHandle;
let gw: TestGateway;
let device: Device;
let pub: Publisher;
let port: number;
let uuid: string;
let reportDir: string;
let files: Record<string, ImageFile>;
let paths: string[];

const image = (body: string, changes: Record<string, ImageFile>): BusyboxImageOptions => realFilesImage(files, body, changes);

beforeAll(async () => {
  [dockerd, upstream, gwh] = await Promise.all([startDockerd(), startDockerRegistry(), startGateway({ args: ["--polling-seconds", "1"] })]);
  gw = asTestGateway(gwh);
  port = await freePort();
  reportDir = await tempDir("rel-delta-cut-");
  device = await Device.create(dockerd);
  paths = realFilePaths(25_000_000);
  files = realFiles(paths);
  ({ pub, uuid } = await deviceOnV1({ gw, upstream, device, app: APP, repo: REPO, port, body: "v1", image: image("v1", {}) }));
}, 180_000);

afterAll(async () => {
  tally.print();
  await device?.cleanup([APP]).catch(() => {});
  await Promise.all([gwh?.stop(), upstream?.stop()]);
  await dockerd?.stop();
});

const inStore = (digest: string) => existsSync(join(device.storeDir, "blobs/sha256", parseDigest(digest).hex));
const aliased = (digest: string) => existsSync(join(device.storeDir, "layers/sha256", parseDigest(digest).hex));
/** Bytes in the store's ingest dir for `digest`: its partial download, or (`.rebuild`) the layer being rebuilt. */
const ingestBytes = (digest: string, ext: "partial" | "rebuild") =>
  statSync(join(device.storeDir, "ingest", `${parseDigest(digest).hex}.${ext}`), { throwIfNoEntry: false })?.size ?? 0;

/** The delta the gateway made to `to` (its cache record `<from hex>-<to hex>.json`). */
function gatewayDelta(to: string): { digest: string; size: number } {
  const dir = join(gw.dataDir, "registry/deltas");
  const recs = readdirSync(dir).filter((f) => f.endsWith(`-${parseDigest(to).hex}.json`));
  if (recs.length !== 1) throw new Error(`${recs.length} delta records for ${to}`);
  const rec = JSON.parse(readFileSync(join(dir, recs[0]!), "utf8"));
  if (!rec.descriptor) throw new Error(`the gateway refused the delta to ${to}: ${rec.refused}`);
  return rec.descriptor;
}

describe("fioup killed with SIGKILL on the delta path", () => {
  CUTS.forEach((c, i) => {
    const version = i + 2;
    test(`${c.name}: the next run ends on target ${version}, nothing half-written committed, nothing committed fetched again`, async () => {
      const body = `v${version}`;
      const changed = `/data/lib/${fileNear(paths, (1 + i) << 20)}`;
      const { ref, image: built } = await pushImageDetailed(upstream, REPO, `v${version}`, image(body, { [changed]: randomBytes(MiB) }));
      await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(ref, port) });
      await pub.publish(version);
      const layer = built.layers.at(-1)!;
      const diffId = layer.diffId;

      const report = join(reportDir, `cut-${i}.jsonl`);
      const s0 = await servedBytes(gwh, `device:${uuid}`);
      const fioup = process.env.FIOUP_BIN ? [process.env.FIOUP_BIN] : [process.execPath, join(ROOT, "fioup/main.ts")];
      const cut = Bun.spawn([...fioup, "update", "--format", "json"], {
        env: { ...process.env, ...device.env(), FIOUP_FAULT: "mid-blob", FIOUP_FAULT_OFFSET: String(c.offset), FIOUP_FAULT_REPORT: report },
        stdout: "pipe",
        stderr: "pipe",
        cwd: ROOT,
      });
      const [, cutErr] = await Promise.all([new Response(cut.stdout).text(), new Response(cut.stderr).text(), cut.exited]);
      const delta = gatewayDelta(layer.digest);
      const marker = existsSync(report) ? (JSON.parse(readFileSync(report, "utf8").trim().split("\n")[0]!) as { detail: { digest?: string; onDisk?: number } }) : undefined;
      const hit = cut.signalCode === "SIGKILL" && marker?.detail.digest === (c.in === "delta" ? delta.digest : layer.digest);

      // At the cut: nothing under blobs/ that does not hash to its name, no trace of the layer as committed.
      const badAtCut = device.corruptBlobs();
      const layerAtCut = inStore(layer.digest) || inStore(diffId) || aliased(layer.digest);
      const deltaAtCut = inStore(delta.digest);
      const deltaPartial = ingestBytes(delta.digest, "partial");
      const rebuildPartial = ingestBytes(layer.digest, "rebuild");
      const s1 = await servedBytes(gwh, `device:${uuid}`);

      const r = await device.fioup("update");
      const s2 = await servedBytes(gwh, `device:${uuid}`);
      const st = await device.fioup("status", "--no-apps");
      const running = (await dockerd.docker("ps", "--filter", `label=com.docker.compose.project=${APP}`, "--format", "{{.ID}}")).trim().split("\n").filter(Boolean);
      const imageIds = await Promise.all(running.map(async (id) => (await dockerd.docker("inspect", "--format", "{{.Image}}", id)).trim()));
      const served = await httpGet(port);
      const bad = device.corruptBlobs();
      const rerunDelta = s2.delta - s1.delta;
      const rerunBlob = s2.blob - s1.blob;
      const dl = r.code === 0 ? await downloadReport(gw, uuid, version) : undefined;

      const survived =
        r.code === 0 && st.json?.current?.name === `amd64-linux-${version}` && imageIds.join() === built.configDigest && served === body &&
        badAtCut.length === 0 && bad.length === 0 && !layerAtCut && deltaAtCut === (c.in === "layer") &&
        rerunBlob < 64 * 1024 && (c.in === "layer" ? rerunDelta === 0 : rerunDelta <= delta.size - deltaPartial) && dl?.deltaLayers === 1;
      tally.record(
        c.name,
        !hit ? "not-tried" : survived ? "survived" : "failed",
        `${hit ? `killed in the ${c.in} at ${marker!.detail.onDisk} B` : `no kill in the ${c.in} (exit ${cut.exitCode ?? cut.signalCode})`}; ` +
          `delta ${delta.size} B (committed at the cut: ${deltaAtCut}, partial ${deltaPartial} B; rebuilt tar partial ${rebuildPartial} of ${layer.tar.byteLength} B); run 1 wire ${s1.delta - s0.delta} B delta + ${s1.blob - s0.blob} B blobs; ` +
          `rerun exit ${r.code}, wire ${rerunDelta} B delta + ${rerunBlob} B blobs; layer ${layer.gz.byteLength} B; blobs ok: ${badAtCut.length + bad.length === 0}`,
        { point: c.name, hit, survived, deltaBytes: delta.size, deltaPartial, rerunDelta, rerunBlob, layerBytes: layer.gz.byteLength },
      );
      expect(hit, `the kill did not land in the ${c.in}: exit ${cut.exitCode ?? cut.signalCode}, marker ${JSON.stringify(marker)}\n${cutErr.slice(-800)}`).toBe(true);
      expect(badAtCut).toEqual([]);
      expect(layerAtCut).toBe(false);
      expect(deltaAtCut).toBe(c.in === "layer");
      // Seen from outside: the cut left the delta, or the rebuilt tar, partly written in ingest/.
      if (c.in === "delta") expect(deltaPartial > 0 && deltaPartial < delta.size).toBe(true);
      else expect(rebuildPartial > 0 && rebuildPartial < layer.tar.byteLength).toBe(true);
      expect(r.code, r.stderr).toBe(0);
      expect(st.json?.current?.name).toBe(`amd64-linux-${version}`);
      expect(imageIds).toEqual([built.configDigest]);
      expect(served).toBe(body);
      expect(bad).toEqual([]);
      expect(dl?.deltaLayers).toBe(1);
      expect(rerunBlob).toBeLessThan(64 * 1024); // configs and bundles at most: no full layer
      if (c.in === "layer") expect(rerunDelta).toBe(0);
      else expect(rerunDelta).toBeLessThanOrEqual(delta.size - deltaPartial);
    }, 180_000);
  });
});
