/**
 * What went wrong when verifying TUF metadata, as classes callers can act on
 * (fioup maps them to exit codes). tuf-js throws untyped errors, and wraps
 * snapshot/targets failures into a `RuntimeError` holding only the message, so
 * {@link classifyTufError} reads both the class names and the messages; a root or timestamp that
 * is not JSON at all comes as the parser's bare SyntaxError, and only its stack says which.
 * Each message says the file and what to do, as the expiry one does: a device is often far from
 * whoever reads it, and "JSON Parse error" alone leaves them nowhere to start.
 *
 * @module
 */
// Neither package re-exports its error classes; instanceof survives minified
// builds (`bun build --compile`), class names may not.
import * as tufErrors from "tuf-js/dist/error.js";
import * as modelErrors from "@tufjs/models/dist/error.js";
import { clockReading, isLinkFailure, LINK_FAILURE_CODES, SET_THE_CLOCK } from "../net/why.ts";

/** Base class: TUF metadata could not be fetched or was refused. */
export class TufVerificationError extends Error {
  override name = "TufVerificationError";
  constructor(
    /** The metadata file concerned (`timestamp.json`...), when known. */
    readonly file: string | undefined,
    why: string,
    options?: ErrorOptions,
  ) {
    super(`Cannot verify TUF metadata${file ? ` ${file}` : ""}: ${why}`, options);
  }
}

/** A version older than (or, for root, not exactly one above) the trusted one: rollback attack. */
export class RollbackError extends TufVerificationError {
  override name = "RollbackError";
}

/**
 * Metadata past its expiry: freeze attack, a gateway that stopped re-signing, or (most often) a
 * device whose clock runs ahead. The check itself is never relaxed; the message says the expiry
 * against what the device's clock reads, so its owner can tell which.
 */
export class ExpiredMetadataError extends TufVerificationError {
  override name = "ExpiredMetadataError";
}

/** Not signed by a threshold of the keys the trusted root names. */
export class BadSignatureError extends TufVerificationError {
  override name = "BadSignatureError";
}

/** A file whose version, length or hash differs from what the role above pinned: mix-and-match. */
export class MetadataMismatchError extends TufVerificationError {
  override name = "MetadataMismatchError";
}

/** A file larger than its size cap. */
export class MetadataTooLargeError extends TufVerificationError {
  override name = "MetadataTooLargeError";
}

/** The server could not be reached or answered with an HTTP error. */
export class MetadataFetchError extends TufVerificationError {
  override name = "MetadataFetchError";
  constructor(file: string | undefined, why: string, readonly status?: number, options?: ErrorOptions) {
    super(file, why, options);
    // Nothing was verified, nor failed to verify: "Cannot verify" would read as a signature problem.
    this.message = `Cannot fetch TUF metadata${file ? ` ${file}` : ""}: ${why}`;
  }
}

/** Malformed metadata (not JSON, wrong type, missing fields). */
export class InvalidMetadataError extends TufVerificationError {
  override name = "InvalidMetadataError";
}

/** The local trust anchor (root.json in the metadata dir) is missing or unusable. */
export class TrustedRootError extends TufVerificationError {
  override name = "TrustedRootError";
}

function fileOf(message: string): string | undefined {
  const m = /\b(root|timestamp|snapshot|targets)(\.json)?\b/i.exec(message);
  return m ? `${m[1]!.toLowerCase()}.json` : undefined;
}

/** The file tuf-js's TrustedMetadataStore was reading when the JSON parser threw (store.js: one method per role; the builds keep names). */
function fileOfStack(err: Error): string | undefined {
  const m = /\bat (?:TrustedMetadataStore\.)?(updateRoot|loadTrustedRoot|updateTimestamp|updateSnapshot|updateDelegatedTargets)\b/.exec(err.stack ?? "");
  return m ? { updateRoot: "root.json", loadTrustedRoot: "root.json", updateTimestamp: "timestamp.json", updateSnapshot: "snapshot.json", updateDelegatedTargets: "targets.json" }[m[1]!] : undefined;
}

/** A link failure's code in a message (tuf-js wraps an error as text, dropping its code: "... error Error: connect ECONNREFUSED ..."). */
const LINK_FAILURE_IN_TEXT = new RegExp(`\\b(?:${[...LINK_FAILURE_CODES].join("|")})\\b`, "i");

/** What to do about a copy older than what this machine verified, online or from a bundle. */
const STALE_COPY_REMEDY =
  "this machine has verified a newer one already, so this copy is stale (a bundle exported before that, or an old copy replayed): " +
  "apply a bundle exported since (gateway export); online, tell the gateway's admin";

/** What to do about a file that is not JSON: a copy cut short or damaged on its way. */
const DAMAGED_COPY_REMEDY =
  "the copy is damaged or cut short: copy the bundle again, or export a new one (gateway export); online, check again, and if it stays so, tell the gateway's admin";

/** What the refresh knew of time when metadata was found expired, for the message. */
export interface ExpiryContext {
  /** The device's clock at the check. */
  now: Date;
  /** The expiry grace the check allowed (verify-targets.ts), in seconds. */
  graceSeconds?: number;
  /** The `expires` of the refused file, when the client still holds it. */
  expiresOf?(file: string): string | undefined;
}

/**
 * Why metadata counts as expired, said against the device's clock: a clock set years ahead (or
 * drifting) makes every fresh file look expired, and only setting the time helps; a right clock
 * leaves a gateway that stopped re-signing, or an old copy replayed.
 */
export function expiredWhy(file: string | undefined, ctx: ExpiryContext): string {
  const expires = file ? ctx.expiresOf?.(file) : undefined;
  const grace = ctx.graceSeconds ? ` (less the expiry grace of ${ctx.graceSeconds} s)` : "";
  return (
    `expired${expires ? ` at ${expires}` : ""} by this machine's clock, which reads ${clockReading(ctx.now)}${grace}: ` +
    `if that is not the time, ${SET_THE_CLOCK} and check again; if it is, the gateway has stopped re-signing its metadata ` +
    "(or an old copy is being replayed): tell the gateway's admin"
  );
}

/**
 * Turns an error thrown by tuf-js's `Updater` into one of the classes above (the original is the `cause`).
 * `expiry` words an expired file against the device's clock ({@link expiredWhy}).
 *
 * @example
 * ```ts
 * try { await updater.refresh(); } catch (e) { throw classifyTufError(e); }
 * ```
 */
export function classifyTufError(err: unknown, fallbackFile?: string, expiry?: ExpiryContext): TufVerificationError {
  if (err instanceof TufVerificationError) return err;
  const e = err instanceof Error ? err : new Error(String(err));
  const kind =
    e instanceof tufErrors.DownloadLengthMismatchError ? "DownloadLengthMismatchError"
    : e instanceof tufErrors.DownloadHTTPError ? "DownloadHTTPError"
    : e instanceof tufErrors.ExpiredMetadataError ? "ExpiredMetadataError"
    : e instanceof tufErrors.BadVersionError ? "BadVersionError"
    : e instanceof modelErrors.UnsignedMetadataError ? "UnsignedMetadataError"
    : e instanceof modelErrors.LengthOrHashMismatchError ? "LengthOrHashMismatchError"
    : e.constructor?.name ?? "";
  // tuf-js's RuntimeError wraps snapshot/targets errors as text: "Unable to load targets error Error: ..."
  // The file is the one the inner message names, if it names one: loading snapshot.json checks the
  // timestamp last ("Unable to load snapshot metadata error Error: Final timestamp.json is expired").
  const wrapped = /^Unable to load (\w+)[\w ]* error (?:\w*Error: )?(.*)$/s.exec(e.message);
  const file = wrapped ? (fileOf(wrapped[2]!) ?? `${wrapped[1]}.json`) : fileOf(e.message) ?? fallbackFile ?? fileOfStack(e);
  const msg = wrapped ? wrapped[2]! : e.message;
  const opts = { cause: err };
  if (kind === "DownloadLengthMismatchError" || /max length reached/i.test(msg))
    return new MetadataTooLargeError(file, `larger than its size cap (${msg})`, opts);
  if (kind === "DownloadHTTPError" || /HTTP \d{3}/.test(msg)) {
    const status = (e as { statusCode?: number }).statusCode;
    return new MetadataFetchError(file, msg, status, opts);
  }
  if (e instanceof MetadataFetchError) return e;
  if (kind === "ExpiredMetadataError" || /is expired/.test(msg))
    return new ExpiredMetadataError(file, expiry ? expiredWhy(file, expiry) : `expired (${msg})`, opts);
  if (/is less than current version|Expected version \d+, got/.test(msg))
    return new RollbackError(file, `older than the trusted version (${msg}): ${STALE_COPY_REMEDY}`, opts);
  if (kind === "SyntaxError" || /JSON Parse error|Unexpected end of JSON|in JSON at position|is not valid JSON/.test(msg))
    return new InvalidMetadataError(file, `not valid JSON (${msg}): ${DAMAGED_COPY_REMEDY}`, opts);
  if (/does not match snapshot version|doesn't match timestamp|length|hash/i.test(msg) || kind === "LengthOrHashMismatchError")
    return new MetadataMismatchError(file, `does not match the version, length or hash pinned by the role above (${msg})`, opts);
  if (kind === "UnsignedMetadataError" || /was signed by \d+\/\d+ keys|signature/i.test(msg))
    return new BadSignatureError(file, `not signed by the trusted keys (${msg})`, opts);
  if (kind === "BadVersionError") return new RollbackError(file, msg, opts);
  if (isLinkFailure(e) || LINK_FAILURE_IN_TEXT.test(msg) || /fetch|socket|network|timed? ?out|abort/i.test(msg) || kind === "TypeError" && /fetch/i.test(msg))
    return new MetadataFetchError(file, msg, undefined, opts);
  return new InvalidMetadataError(file, msg, opts);
}
