/**
 * Where the gateway's TUF repository keeps its metadata: every signed version
 * of every role, so `N.root.json` chains and consistent-snapshot names
 * (`N.snapshot.json`, `N.targets.json`) are served byte for byte.
 *
 * Contract for implementations (sqlite, PostgreSQL, memory); run
 * `tufStorageContract()` from `./_storage-contract.ts` against yours:
 * - A record is one signed metadata file: `(role, version)` is unique and,
 *   once written, never changes. `json` is the exact file text (UTF-8) and
 *   must come back identical; `expires` is its ISO expiry (informational).
 *   Suggested table: `tuf_metadata(role text, version integer, json text,
 *   expires text, primary key (role, version))`.
 * - `put(records)` writes all records in ONE transaction: all or nothing.
 *   If any `(role, version)` already exists it writes nothing and throws
 *   {@link TufVersionConflictError} (another writer won; the repo reloads
 *   and retries). This is what keeps several gateway processes sharing one
 *   PostgreSQL database consistent.
 * - `getLatest(role)` is the record with the highest version of that role.
 * - `deleteBefore(role, version)` (optional) drops old versions the repo no
 *   longer serves; root versions are never deleted.
 * - All methods are async and may be called concurrently.
 *
 * The targets list is not stored separately: it is the latest signed
 * targets.json (`TufRepo.targets()` reads it).
 *
 * @module
 */
import type { RoleName } from "../../lib/tuf/metadata.ts";

export type { RoleName };

/** One signed metadata file version. */
export interface TufRecord {
  role: RoleName;
  version: number;
  /** The exact file text as served. */
  json: string;
  /** ISO 8601 expiry of this version. */
  expires: string;
}

export interface TufStorage {
  /** The highest version of `role`, or `undefined` before the repository exists. */
  getLatest(role: RoleName): Promise<TufRecord | undefined>;
  /** One version of `role`, or `undefined`. */
  get(role: RoleName, version: number): Promise<TufRecord | undefined>;
  /**
   * Writes the records atomically.
   * @throws {TufVersionConflictError} If any `(role, version)` exists already (nothing written).
   */
  put(records: TufRecord[]): Promise<void>;
  /**
   * Optional: deletes versions of `role` below `version` (never called for root, whose
   * whole chain stays served). Without it, every version is kept forever.
   * Returns how many were deleted.
   */
  deleteBefore?(role: Exclude<RoleName, "root">, version: number): Promise<number>;
  /**
   * Optional: the latest record of `role` if the storage holds it in memory now (`{ rec }`, rec
   * undefined before the repository exists), else undefined; then ask getLatest. Lets a
   * timestamp.json poll be answered without a promise (a cache in front of a database:
   * gateway/store/tuf-cache.ts).
   */
  latestNow?(role: RoleName): { rec: TufRecord | undefined } | undefined;
}

/** Thrown by {@link TufStorage.put} when a `(role, version)` exists: a concurrent writer got there first. */
export class TufVersionConflictError extends Error {
  override name = "TufVersionConflictError";
  constructor(role: RoleName, version: number, options?: ErrorOptions) {
    super(`Cannot store TUF ${role} version ${version}: that version exists already`, options);
  }
}
