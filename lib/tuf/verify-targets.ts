/**
 * The device's TUF client: runs the TUF §5 workflow with tuf-js's `Updater`
 * (root chain, timestamp, snapshot, targets; rollback, freeze, mix-and-match
 * and signature checks) and returns the verified targets. tuf-js has no "list
 * targets" call, so the verified targets.json is read back from the metadata
 * dir after `refresh()` (tuf-js only writes a file there once it verified it).
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import { writeFileAtomic } from "../fs/atomic-write.ts";
import { fsWhy } from "../fs/why.ts";
import { join } from "node:path";
import { Value } from "@sinclair/typebox/value";
import { Updater } from "tuf-js";
import { TargetEntry } from "../api/target.ts";
import { TufFetcher, type FetchLike, type TlsOptions } from "./fetcher.ts";
import { MAX_EXPIRY_GRACE_SECONDS } from "./expiry-grace.ts";
import { classifyTufError, InvalidMetadataError, TrustedRootError } from "./verification-errors.ts";

/** Size caps (bytes) per metadata file. */
export interface TufSizeCaps {
  root: number;
  timestamp: number;
  snapshot: number;
  targets: number;
}

export const DEFAULT_SIZE_CAPS: TufSizeCaps = { root: 64 << 10, timestamp: 16 << 10, snapshot: 64 << 10, targets: 4 << 20 };

export interface VerifyTargetsOptions {
  /** The trusted store: holds root.json (the trust anchor) and the last verified files. */
  metadataDir: string;
  /** Where the metadata is served, e.g. `https://gw:8443/repo/`. */
  metadataBaseUrl: string;
  /** A fetch function, or client TLS for Bun's fetch (`{ tls: { ca, cert, key } }`). */
  fetch?: FetchLike | { tls: TlsOptions };
  /** Headers sent with every request (x-ats-tags, x-ats-target...). */
  headers?: () => Record<string, string>;
  sizeCaps?: Partial<TufSizeCaps>;
  timeoutMs?: number;
  /**
   * Seconds an expired role is still accepted (default 0: none). For devices without a trusted
   * clock that install offline bundles: expiry is then checked against `now - grace`, for every
   * role alike. Bounded by {@link MAX_EXPIRY_GRACE_SECONDS}.
   */
  expiryGraceSeconds?: number;
}

/** An expiry grace outside 0..{@link MAX_EXPIRY_GRACE_SECONDS}. */
export class InvalidExpiryGraceError extends Error {
  override name = "InvalidExpiryGraceError";
}

export interface VerifiedTargets {
  /** The targets of the verified targets.json whose entry has our shape (lib/api TargetEntry). */
  targets: Record<string, TargetEntry>;
  /** targets.json version. */
  version: number;
  /** Names of signed targets skipped because their entry does not have our shape. */
  skipped: string[];
}

// A crash while tuf-js rewrites root.json (it writes in place) must not leave
// the device without a trust anchor: keep the last good one beside it.
const BACKUP = "root.json.last-good";

async function protectRoot(dir: string): Promise<void> {
  const root = join(dir, "root.json");
  const backup = join(dir, BACKUP);
  let text: string | undefined;
  try {
    text = await readFile(root, "utf8");
    JSON.parse(text);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === "ENOENT" && text === undefined) {
      // No errno as the cause: describeError would add "ENOENT: no such file or directory, open '...'".
      throw new TrustedRootError("root.json", `no trusted root in ${dir}: the device needs its initial root.json`);
    }
    // Unreadable or torn root.json: fall back to the last good copy, if any.
    let good: Uint8Array;
    try {
      good = await readFile(backup);
    } catch {
      // Why in words, not the parser's or the errno's text.
      const why = cause instanceof SyntaxError ? "not JSON" : fsWhy(cause);
      throw new TrustedRootError("root.json", `the trusted root ${root} is unreadable (${why}) and there is no backup (${BACKUP})`);
    }
    await writeFileAtomic(root, good);
    return;
  }
  // Unchanged since the last run: nothing to write (and nothing to fsync on every check).
  const prior = await readFile(backup, "utf8").catch(() => undefined);
  if (prior !== text) await writeFileAtomic(backup, text);
}

/**
 * Refreshes TUF metadata from the server and returns the verified targets.
 *
 * @example
 * ```ts
 * const { targets, version } = await verifyAndLoadTargets({
 *   metadataDir: "/var/sota/tuf", metadataBaseUrl: "https://gw:8443/repo/",
 *   fetch: { tls: { ca, cert, key } }, headers: () => ({ "x-ats-tags": "main" }),
 * });
 * ```
 * @throws {TrustedRootError} No usable root.json in `metadataDir`.
 * @throws {RollbackError} A version older than the trusted one.
 * @throws {ExpiredMetadataError} Expired metadata (freeze attack).
 * @throws {BadSignatureError} Not signed by the keys the root names.
 * @throws {MetadataMismatchError} Version/hash/length differing from what the role above pinned.
 * @throws {MetadataTooLargeError} A file over its size cap.
 * @throws {MetadataFetchError} Network or HTTP errors.
 * @throws {InvalidMetadataError} Anything else wrong with the metadata.
 * @throws {InvalidExpiryGraceError} An `expiryGraceSeconds` out of bounds.
 */
export async function verifyAndLoadTargets(opts: VerifyTargetsOptions): Promise<VerifiedTargets> {
  const caps = { ...DEFAULT_SIZE_CAPS, ...opts.sizeCaps };
  await protectRoot(opts.metadataDir);
  const fetcher = new TufFetcher({
    fetch: opts.fetch,
    headers: opts.headers,
    timeoutMs: opts.timeoutMs,
    maxBytes: (url) => {
      const role = /(root|timestamp|snapshot|targets)\.json$/.exec(url)?.[1] as keyof TufSizeCaps | undefined;
      return role ? caps[role] : Math.min(caps.root, caps.timestamp, caps.snapshot);
    },
  });
  let updater: Updater;
  try {
    updater = new Updater({
      metadataDir: opts.metadataDir,
      metadataBaseUrl: opts.metadataBaseUrl,
      fetcher,
      config: {
        rootMaxLength: caps.root,
        timestampMaxLength: caps.timestamp,
        snapshotMaxLength: caps.snapshot,
        targetsMaxLength: caps.targets,
        // The root chain is walked one version at a time; bound it.
        maxRootRotations: 64,
      },
    });
  } catch (cause) {
    throw new TrustedRootError("root.json", `the trusted root in ${opts.metadataDir} is invalid: ${(cause as Error).message}`, { cause });
  }
  const grace = opts.expiryGraceSeconds ?? 0;
  if (!(Number.isInteger(grace) && grace >= 0 && grace <= MAX_EXPIRY_GRACE_SECONDS)) {
    throw new InvalidExpiryGraceError(`Invalid expiry grace ${grace}: it must be a whole number of seconds from 0 to ${MAX_EXPIRY_GRACE_SECONDS}`);
  }
  // TUF §5.1 fixes the update's reference time; tuf-js records it when the Updater is built and
  // has no option for it, so a grace moves that one recorded instant back (every expiry check reads it).
  if (grace > 0) {
    const set = (updater as unknown as { trustedSet?: { referenceTime?: unknown } }).trustedSet;
    // Never silently verify without the grace asked for (or with none when one was asked) after a tuf-js upgrade.
    if (!(set?.referenceTime instanceof Date)) throw new InvalidExpiryGraceError("Cannot apply an expiry grace: this tuf-js keeps no reference time");
    set.referenceTime = new Date(Date.now() - grace * 1000);
  }
  const now = new Date();
  try {
    await updater.refresh();
  } catch (err) {
    throw classifyTufError(err, undefined, { now, graceSeconds: grace, expiresOf: (file) => heldExpiry(updater, file) });
  }
  return readVerifiedTargets(opts.metadataDir);
}

/**
 * The `expires` of a role tuf-js still holds after refusing it (it keeps an expired root,
 * timestamp and snapshot, not an expired targets), to say in the message; undefined otherwise.
 */
function heldExpiry(updater: Updater, file: string): string | undefined {
  const role = file.replace(/\.json$/, "");
  const set = (updater as unknown as { trustedSet?: Record<string, { signed?: { expires?: unknown } } | undefined> }).trustedSet;
  const expires = set?.[role]?.signed?.expires;
  return typeof expires === "string" ? expires : undefined;
}

/** Reads targets.json that the last successful refresh verified and persisted. */
async function readVerifiedTargets(dir: string): Promise<VerifiedTargets> {
  let doc: { signed?: { _type?: string; version?: number; targets?: Record<string, unknown> } };
  try {
    doc = JSON.parse(await readFile(join(dir, "targets.json"), "utf8"));
  } catch (cause) {
    throw new InvalidMetadataError("targets.json", `cannot read the verified copy: ${(cause as Error).message}`, { cause });
  }
  const signed = doc.signed;
  if (signed?._type !== "targets" || typeof signed.version !== "number")
    throw new InvalidMetadataError("targets.json", "the verified copy is not targets metadata");
  const targets: Record<string, TargetEntry> = {};
  const skipped: string[] = [];
  for (const [name, entry] of Object.entries(signed.targets ?? {})) {
    if (Value.Check(TargetEntry, entry)) targets[name] = entry;
    else skipped.push(name);
  }
  return { targets, version: signed.version, skipped };
}
