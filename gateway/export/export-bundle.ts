/**
 * Writes an offline bundle (format: lib/bundle/format.ts, docs/offline.md) from a running
 * gateway, with an admin or publish token: the TUF metadata exactly as devices get it from /repo/ (every
 * root version, so a device on any older root walks the chain), then the blobs of the target's
 * apps from the registry, leaving out those the `from` target already had, and carrying a layer
 * as a delta from the `from` target's layer when one verifiably rebuilds it (_bundle-deltas.ts).
 * The metadata is
 * verified (from 1.root.json, as a new device would) before a blob is copied, and index.json is
 * written last, so an interrupted export leaves no bundle a device would take; a failed or
 * signalled one also removes what it wrote. Only the bundle goes into --out, after a check that
 * it fits (_room.ts); the scratch (verified metadata, a delta's base layer and rebuilt tar) is in
 * the system's temp folder, so a medium that holds the bundle is never filled by what is not in it.
 *
 * @module
 */
import { readdirSync, rmSync } from "node:fs";
import { acquireLock, lockFilePid, lockHolder } from "../../lib/fs/pid-lock.ts";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { makeOwnedFolder, removeDeadFolders } from "../../lib/fs/owned-folder.ts";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AdminClient } from "../../lib/api/admin-client.ts";
import type { Target } from "../../lib/api/index.ts";
import { BUNDLE_FORMAT, BUNDLE_FORMAT_DELTAS, BUNDLE_METADATA_BASE_URL, BUNDLE_TUF_DIR, bundleMetadataFetch, type BundleIndex } from "../../lib/bundle/index.ts";
import { writeFileAtomic } from "../../lib/fs/atomic-write.ts";
import { emptyStart, putBackEmpty } from "../../lib/fs/paths.ts";
import { resolveApps, type AppBlob } from "../../lib/device/resolve.ts";
import { DeviceBlobStore } from "../../lib/device/store.ts";
import { REF_NAME_ANNOTATION } from "../../lib/oci/oci-layout.ts";
import { formatPlatform, type Platform } from "../../lib/oci/platform.ts";
import { parseReference } from "../../lib/oci/reference.ts";
import { gatewayRegistryClients } from "../../lib/oci/registry-clients.ts";
import { MediaType } from "../../lib/oci/media-types.ts";
import { selectTarget, verifyAndLoadTargets } from "../../lib/tuf/index.ts";
import { bundleDeltas } from "./_bundle-deltas.ts";
import { checkRoom, sayWhere, type WritePlace } from "./_room.ts";
import { plainHttpHint } from "../publish/plain-http-hint.ts";
import { sizeText } from "../../lib/cli/bytes.ts";
import { exitOnSignal } from "../../lib/cli/interrupt.ts";
import type { ProgressLine } from "../../lib/cli/progress.ts";

/** The export cannot be made as asked (no such target, an output dir in use, metadata that does not verify...). */
export class ExportError extends Error {
  override name = "ExportError";
}

/** The gateway's targets have no target with the version (or --from version) asked for that hardware id: exit 20 (gateway/exit-codes.ts), as preload's. */
export class NoSuchTargetError extends ExportError {
  override name = "NoSuchTargetError";
}

export interface ExportOptions {
  /**
   * The gateway, through the admin client (an admin or publish token; a viewer's reads too): the
   * metadata is read with it, and its server, token and CA reach the gateway's registry.
   */
  admin: AdminClient;
  /**
   * The gateway's public URL (its whoami says it): targets name its registry by this URL's host,
   * which is read through the client's server (a replica's own address, the local one --data finds). Default that server.
   */
  publicUrl?: string;
  /** Target version to bundle, and the hardware id it is for. */
  version: string;
  hwid: string;
  /** Leave out the blobs this version's target (same hwid) already has. */
  from?: string;
  /** With `from`: carry layers as deltas where one verifiably rebuilds them (default true). */
  deltas?: boolean;
  platform: Platform;
  /** The bundle directory: must not exist yet or be empty. */
  out: string;
  /** Registries other than the gateway's reached over plain HTTP (loopback only). */
  insecureRegistries?: string[];
  /** The command's progress line (lib/cli/progress.ts): steps printed, the bytes of a copy or a delta's base shown as they come. None: silent. */
  progress?: ProgressLine;
}

export interface ExportResult {
  out: string;
  target: string;
  from?: string;
  blobs: number;
  bytes: number;
  /** Layers carried as deltas, and what the bundle would weigh with those layers whole. */
  deltas: number;
  bytesWithoutDeltas: number;
  /** Blobs of the target left out because the `from` target has them. */
  skipped: number;
  tuf: string[];
}

/** Blobs copied at once. */
const PARALLEL_BLOBS = 4;

/** Export's scratch folder in the temp dir, and the lock naming its owner (lib/fs/owned-folder.ts). */
const EXPORT_TMP_PREFIX = "gateway-export-";
const OWNER_LOCK = ".owner.lock";
/** In --out while the bundle is written: the export's PID (lib/fs/pid-lock.ts). */
const OUT_LOCK = ".export.lock";

const versionOf = (bytes: Uint8Array, role: string, what: string): number => {
  const v = (JSON.parse(new TextDecoder().decode(bytes)) as { signed?: { meta?: Record<string, { version?: number }> } }).signed?.meta?.[`${role}.json`]?.version;
  if (!Number.isSafeInteger(v)) throw new ExportError(`Cannot read the ${role} version from ${what}`);
  return v!;
};

/** Copies the gateway's metadata chain into `tufDir`; returns the file names. */
async function copyMetadata(admin: AdminClient, tufDir: string): Promise<string[]> {
  // Under the server's path (https://host/ota/repo/...), as every client joins it.
  const getMetadata = (file: string) => admin.file(`/repo/${file}`);
  const files: string[] = [];
  const put = async (name: string, bytes: Uint8Array) => {
    await writeFile(join(tufDir, name), bytes);
    files.push(name);
  };
  for (let n = 1; ; n++) {
    const root = await getMetadata(`${n}.root.json`);
    if (!root) {
      if (n === 1) throw new ExportError(`Cannot export: ${admin.server} serves no 1.root.json`);
      break;
    }
    await put(`${n}.root.json`, root);
  }
  const timestamp = await getMetadata("timestamp.json");
  if (!timestamp) throw new ExportError(`Cannot export: ${admin.server} serves no timestamp.json`);
  await put("timestamp.json", timestamp);
  // The gateway's root sets consistent_snapshot: clients ask for N.snapshot.json and N.targets.json.
  const snapshotName = `${versionOf(timestamp, "snapshot", "timestamp.json")}.snapshot.json`;
  const snapshot = await getMetadata(snapshotName);
  if (!snapshot) throw new ExportError(`Cannot export: ${admin.server} serves no ${snapshotName} (it changed during the export? try again)`);
  await put(snapshotName, snapshot);
  const targetsName = `${versionOf(snapshot, "targets", snapshotName)}.targets.json`;
  const targets = await getMetadata(targetsName);
  if (!targets) throw new ExportError(`Cannot export: ${admin.server} serves no ${targetsName} (it changed during the export? try again)`);
  await put(targetsName, targets);
  return files;
}

/** Verifies the bundle's own metadata from its 1.root.json, as a device that trusts only that would. */
async function verifyMetadata(out: string, scratch: WritePlace): Promise<Record<string, Target["entry"]>> {
  const dir = join(scratch.dir, "tuf");
  await mkdir(dir, { recursive: true }).catch((e) => Promise.reject(sayWhere(e, scratch)));
  const root = await Bun.file(join(out, BUNDLE_TUF_DIR, "1.root.json")).bytes();
  await writeFile(join(dir, "root.json"), root).catch((e) => Promise.reject(sayWhere(e, scratch)));
  try {
    return (await verifyAndLoadTargets({ metadataDir: dir, metadataBaseUrl: BUNDLE_METADATA_BASE_URL, fetch: bundleMetadataFetch(out) })).targets;
  } catch (e) {
    throw new ExportError(`Cannot export: the gateway's TUF metadata does not verify: ${(e as Error).message}`, { cause: e });
  }
}

const appsOf = (t: Target) => Object.entries(t.entry.custom.docker_compose_apps).map(([name, a]) => ({ name, uri: a.uri }));

/**
 * Exports a bundle.
 *
 * @throws {ExportError} No target `version` for `hwid`, an output dir in use, metadata that does not verify.
 * @throws {ExportWriteError} The bundle does not fit in --out, or the scratch in the temp folder (said with the sizes and the folder).
 * @throws {AdminApiError} The gateway refused a metadata request (its reason in the message: a refused token says why).
 * @throws {GatewayUnreachableError} The gateway did not answer a metadata request.
 * @throws {AppResolveError | RegistryError | DigestMismatchError} The registry refused or served other bytes.
 * @throws {RegistryUnreachableError} A registry could not be reached (one that failed the TLS handshake and is not in `insecureRegistries`: saying to add it).
 */
/**
 * While an export writes, --out holds a lock naming it: a bundle an export killed outright
 * (SIGKILL, a power cut: no handler ran) left is known by its lock naming a process that is gone,
 * and emptied here, so the same command can simply be run again. Returns the line that says so,
 * or undefined when there was none.
 *
 * @throws {ExportError} Another export is writing there now.
 */
export function clearKilledExport(out: string): string | undefined {
  const outLock = join(out, OUT_LOCK);
  const writer = lockHolder(outLock);
  if (writer !== undefined) throw new ExportError(`Cannot export into ${out}: another gateway export (process ${writer}) is writing a bundle there`);
  const killed = lockFilePid(outLock);
  if (killed === undefined) return undefined;
  for (const name of readdirSync(out)) rmSync(join(out, name), { recursive: true, force: true });
  return `removed the unfinished bundle in ${out} that an export (process ${killed}) left when it was killed`;
}

export async function exportBundle(o: ExportOptions): Promise<ExportResult> {
  const progress: ProgressLine = o.progress ?? { show() {}, print() {}, clear() {} };
  const log = progress.print;
  const cleared = clearKilledExport(o.out);
  if (cleared) log(cleared);
  const outLock = join(o.out, OUT_LOCK);
  const was = emptyStart(o.out);
  if (was === undefined) throw new ExportError(`Cannot export into ${o.out}: it is not empty`);
  await mkdir(join(o.out, BUNDLE_TUF_DIR), { recursive: true });
  acquireLock(outLock);
  const bundlePlace: WritePlace = { dir: o.out, what: "the bundle", remedy: "use a larger medium, or export --from the version the devices run (a smaller bundle)" };
  await removeDeadFolders(tmpdir(), EXPORT_TMP_PREFIX, OWNER_LOCK); // what an export killed outright left
  const work = await makeOwnedFolder(tmpdir(), EXPORT_TMP_PREFIX, OWNER_LOCK).catch((e) => {
    putBackEmpty(o.out, was);
    return Promise.reject(sayWhere(e, { dir: tmpdir(), what: "the export's scratch folder", remedy: "set TMPDIR to a folder with room" }));
  });
  const scratch: WritePlace = { dir: work, what: "the export's scratch", remedy: "set TMPDIR to a folder with room (it holds a delta's base layer and the layer it rebuilds, uncompressed)" };
  let finished = false;
  const insecure = new Set(o.insecureRegistries ?? []);
  // Ctrl-C or SIGTERM ends the process without running the `finally` below: clean up the same
  // way here (synchronously, nothing else runs after it), so --out can be given again at once.
  const releaseSignals = exitOnSignal("gateway export", () => {
    progress.clear();
    rmSync(work, { recursive: true, force: true });
    putBackEmpty(o.out, was);
    return `removed the unfinished bundle from ${o.out}`;
  });
  try {
    log(`copying the TUF metadata from ${o.admin.server}/repo/`);
    const tuf = await copyMetadata(o.admin, join(o.out, BUNDLE_TUF_DIR));
    const targets = await verifyMetadata(o.out, scratch);
    const pick = (version: string) => {
      const t = selectTarget(targets, { hwid: o.hwid, tags: [], version });
      if (!t) {
        const versions = [...new Set(Object.values(targets).filter((e) => e.custom.hardwareIds.includes(o.hwid)).map((e) => Number(e.custom.version)))].sort((a, b) => a - b);
        const have = versions.length ? `it has ${versions.length > 10 ? `${versions.slice(-10).join(", ")} (the newest 10 of ${versions.length})` : versions.join(", ")}` : "it has none for that hardware id";
        throw new NoSuchTargetError(`No target with version ${version} for hardware id ${o.hwid} in the gateway's targets.json: ${have}`);
      }
      return t;
    };
    const target = pick(o.version);
    const from = o.from !== undefined ? pick(o.from) : undefined;

    // The gateway's registry as the targets name it (by its public host: publicUrlOf in lib/api/admin.ts), reached through --server.
    const publicUrl = new URL(o.publicUrl ?? o.admin.server);
    const gatewayHost = publicUrl.host;
    // An external registry using the gateway as its token realm is the one the targets' app URIs name; no other gets a token there.
    const appHosts = new Set([...appsOf(target), ...(from ? appsOf(from) : [])].map((a) => parseReference(a.uri).registry));
    const registry = gatewayRegistryClients(
      { serverHost: new URL(o.admin.server).host, publicUrl, token: o.admin.token, ...(o.admin.ca ? { ca: o.admin.ca } : {}), realmFor: (host) => appHosts.has(host) },
      (host) => ({ scheme: insecure.has(host) ? "http" : "https" }),
      { userAgent: "gateway-export" },
    );
    // Resolution fetches the manifests and compose bundles it walks into the bundle's store;
    // what the bundle must not hold is pruned before index.json is written.
    const store = new DeviceBlobStore(o.out);
    log(`resolving the apps of ${target.name}${from ? ` and of ${from.name}` : ""} for ${formatPlatform(o.platform)}`);
    const want = await resolveApps(appsOf(target), { registry, store, platform: o.platform });
    const fromBlobs = from ? (await resolveApps(appsOf(from), { registry, store, platform: o.platform })).blobs : [];
    const had = new Set(fromBlobs.map((b) => b.digest));
    const whole: AppBlob[] = want.blobs.filter((b) => !had.has(b.digest));
    const bytesWithoutDeltas = whole.reduce((n, b) => n + b.size, 0);
    if (from && o.deltas !== false) log(`asking ${gatewayHost} for layer deltas from ${from.name}`);
    const deltas =
      from && o.deltas !== false
        ? await bundleDeltas({ registry, gatewayHost, store, scratch, want: want.blobs, had: fromBlobs, carry: whole, progress })
        : [];
    const asDelta = new Set(deltas.map((d) => d.to));
    const blobs = whole.filter((b) => !asDelta.has(b.digest));
    const deltaBytes = deltas.reduce((n, d) => n + d.size, 0);
    const bytes = blobs.reduce((n, b) => n + b.size, 0) + deltaBytes;
    // What is not in --out yet (resolution put the manifests there): refused now if it cannot fit, not half way.
    await checkRoom(bundlePlace, blobs.filter((b) => !store.has(b.digest)).reduce((n, b) => n + b.size, 0));
    const toCopy = bytes - deltaBytes;
    log(`copying ${blobs.length} blobs (${sizeText(toCopy)})${from ? `, leaving out ${want.blobs.length - whole.length} that ${from.name} has` : ""}${deltas.length ? `; ${deltas.length === 1 ? "1 layer as a delta" : `${deltas.length} layers as deltas`} (${sizeText(deltaBytes)} instead of ${sizeText(whole.filter((b) => asDelta.has(b.digest)).reduce((n, b) => n + b.size, 0))})` : ""}`);
    let next = 0;
    let done = 0;
    // Bytes on disk of each blob copied or being copied: a multi-GB layer from a remote gateway
    // takes minutes, and the line says how far it and the whole copy are.
    const copied = new Map<string, number>();
    const worker = async () => {
      while (next < blobs.length) {
        const b = blobs[next++]!;
        await store.pull(registry(b.registry), b.repo, b, {
          onProgress: (n) => {
            copied.set(b.digest, n);
            let all = 0;
            for (const m of copied.values()) all += m;
            progress.show(`  copying ${b.digest.slice(0, 19)}: ${sizeText(n)} of ${sizeText(b.size)}; ${sizeText(all)} of ${sizeText(toCopy)} in all, ${done}/${blobs.length} blobs done`);
          },
        });
        copied.set(b.digest, b.size);
        done++;
        if (b.size > 1 << 20 || done === blobs.length) log(`  ${done}/${blobs.length} ${b.digest.slice(0, 19)} (${sizeText(b.size)})`);
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_BLOBS, blobs.length) }, worker));
    store.prune(new Set([...blobs.map((b) => b.digest), ...deltas.map((d) => d.digest)]));
    store.tidy(); // its empty work folders are no part of a bundle
    await writeFile(join(o.out, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));

    const appManifests = blobs.filter((b) => b.kind === "app-manifest");
    const names = new Map(appsOf(target).map((a) => [a.uri.split("@")[1], a.name]));
    const index: BundleIndex = {
      schemaVersion: 2,
      mediaType: MediaType.OciIndex,
      manifests: appManifests.map((b) => ({
        mediaType: b.mediaType,
        digest: b.digest,
        size: b.size,
        annotations: { [REF_NAME_ANNOTATION]: names.get(b.digest) ?? b.repo.split("/").pop()!, "io.fioup.bundle.repository": `${b.registry}/${b.repo}` },
      })),
      annotations: { "org.opencontainers.image.created": new Date().toISOString(), "io.fioup.bundle.target": target.name },
      bundle: {
        format: deltas.length ? BUNDLE_FORMAT_DELTAS : BUNDLE_FORMAT,
        target: target.name,
        version: String(target.entry.custom.version),
        hwid: o.hwid,
        platform: formatPlatform(o.platform),
        ...(from ? { from: String(from.entry.custom.version) } : {}),
        createdAt: new Date().toISOString(),
        tuf,
        blobs,
        ...(deltas.length ? { deltas } : {}),
        bytes,
      },
    };
    // Last, and atomically: a bundle without index.json is unfinished and refused by readers.
    await writeFileAtomic(join(o.out, "index.json"), JSON.stringify(index, null, 1));
    rmSync(outLock, { force: true });
    finished = true;
    return { out: o.out, target: target.name, ...(from ? { from: from.name } : {}), blobs: blobs.length, bytes, deltas: deltas.length, bytesWithoutDeltas, skipped: want.blobs.length - whole.length, tuf };
  } catch (e) {
    // Every write not to the scratch went into --out (Bun's ENOSPC names no path): say which.
    // A registry that failed the TLS handshake: the flag to give, as publish says it.
    throw plainHttpHint(sayWhere(e, bundlePlace), insecure);
  } finally {
    progress.clear();
    releaseSignals();
    await rm(work, { recursive: true, force: true });
    // A failed export leaves --out as it found it: no half bundle for someone to carry to a device.
    if (!finished) putBackEmpty(o.out, was);
  }
}
