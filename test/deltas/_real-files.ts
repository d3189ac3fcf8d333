/**
 * Real files for delta tests and benchmarks: the first `bytes` of regular files under
 * /usr/lib/x86_64-linux-gnu (shared libraries, sorted by path, each under 8 MB, no symlinks), as an image
 * layer's file map, plus ways to change them as a release would, the app image the delta tests
 * build on them, and the download report they read back from the gateway.
 *
 * @module
 */
import { lstatSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { DeviceEvent } from "../../lib/api/index.ts";
import type { BusyboxImageOptions, ImageFile } from "../harness/images.ts";
import type { TestGateway } from "../fioup/_setup.ts";

export const REAL_FILES_ROOT = "/usr/lib/x86_64-linux-gnu";

/** Paths (relative to {@link REAL_FILES_ROOT}) of real files adding up to just over `bytes`, sorted. */
export function realFilePaths(bytes: number, root = REAL_FILES_ROOT): string[] {
  const out: string[] = [];
  let total = 0;
  const walk = (dir: string, rel: string): boolean => {
    for (const name of readdirSync(dir).sort()) {
      const abs = join(dir, name);
      // lstat: symlinks are skipped, so a copy never writes through one into the system's files.
      const st = lstatSync(abs, { throwIfNoEntry: false });
      if (!st) continue;
      const r = rel ? `${rel}/${name}` : name;
      if (st.isDirectory()) {
        if (walk(abs, r)) return true;
      } else if (st.isFile() && st.size < 8 << 20) {
        out.push(r);
        total += st.size;
        if (total > bytes) return true;
      }
    }
    return false;
  };
  walk(root, "");
  return out;
}

/** The files as an image layer under `/data/lib/...`. */
export function realFiles(paths: string[], root = REAL_FILES_ROOT): Record<string, ImageFile> {
  return Object.fromEntries(paths.map((p) => [`/data/lib/${p}`, readFileSync(join(root, p))]));
}

/** The path of the file closest to `size` bytes. */
export function fileNear(paths: string[], size: number, root = REAL_FILES_ROOT): string {
  return paths.map((p) => ({ p, d: Math.abs(statSync(join(root, p)).size - size) })).sort((a, b) => a.d - b.d)[0]!.p;
}


/**
 * An httpd app image (busybox httpd serving `body`) over one big layer: `files` with `changes`
 * applied. The big layer is gzipped at level 1 (0.6 s for 50 MB instead of 2-3 s at level 6, per
 * version a test builds): what the tests measure is the delta against the layer, and a layer that
 * compresses less only makes the whole-layer figure they compare with larger.
 */
export function realFilesImage(files: Record<string, ImageFile>, body: string, changes: Record<string, ImageFile> = {}): BusyboxImageOptions {
  return {
    cmd: ["httpd", "-f", "-p", "80", "-h", "/www"],
    exposedPorts: ["80/tcp"],
    layers: [{ ...files, ...changes, "/www/index.html": body }],
    gzipLevel: 1,
  };
}

/** What a device's update to `version` reported in its EcuDownloadCompleted event, as the gateway keeps it. */
export interface DownloadReport {
  bytesFetched: number;
  bytesFull: number;
  deltaLayers: number;
  deltas: { layer: string; from: string; deltaBytes: number; layerBytes: number }[];
}

/** The EcuDownloadCompleted details of device `uuid`'s update to `version` (from the gateway's admin API). */
export async function downloadReport(gw: TestGateway, uuid: string, version: number): Promise<DownloadReport> {
  const { updates } = await gw.admin<{ updates: { version?: string; events: DeviceEvent[] }[] }>(`/admin/devices/${uuid}/updates`);
  const done = updates.find((u) => u.version === String(version))?.events.find((e) => e.eventType.id === "EcuDownloadCompleted");
  if (!done?.event.details) throw new Error(`no EcuDownloadCompleted for version ${version}`);
  return JSON.parse(done.event.details) as DownloadReport;
}
