/**
 * The gateway's TUF repository (standard TUF 1.0, consistent snapshots): it
 * signs targets.json whenever targets are added or removed, chains
 * snapshot.json and timestamp.json to it by version, length and hash,
 * re-signs what is about to expire, rotates keys, and serves every version
 * byte for byte to the `/repo/` route. Writes are serialised in-process and
 * stored atomically (one `TufStorage.put` per change), so a client never sees
 * a timestamp pointing at a snapshot or targets version that is not stored.
 * A device in a rollout may be served its signed view of the chain instead
 * (./views.ts): derived from these stored versions, never stored itself.
 *
 * @module
 */
import { Root, Snapshot, Timestamp, type Metadata } from "@tufjs/models";
import { Value } from "@sinclair/typebox/value";
import { randomBetween, sleep } from "../../lib/net/backoff.ts";
import { TARGET_NAME, TARGET_NAME_RULE, TargetEntry, TargetNotFoundError } from "../../lib/api/target.ts";
import { modelKey, type TufKeyPair } from "../../lib/tuf/keys.ts";
import { expiresAt, metaFileFor, parseMetadata, ROLE_NAMES, serializeMetadata, signJson, signMetadata, type RoleName, type Signed, type SignedOf } from "../../lib/tuf/metadata.ts";
import { TufKeyStore, SigningKeyUnavailableError } from "./key-store.ts";
import type { KeyHandoff } from "./key-handoff.ts";
import { DEFAULT_MAX_TARGETS_PER_HWID, pruneTargets } from "./retention.ts";
import { targetEntryProblem } from "./target-policy.ts";
import { TufVersionConflictError, type TufRecord, type TufStorage } from "./storage.ts";
import { SignedViews, type View, type ViewLookup } from "./views.ts";
import { describeSchemaProblem } from "../../lib/api/schema-problem.ts";

const DAY = 86_400;

/** Lifetimes in seconds: root 1 year, targets 1 year, snapshot 7 days, timestamp 1 day. */
export const DEFAULT_EXPIRIES: Record<RoleName, number> = { root: 365 * DAY, targets: 365 * DAY, snapshot: 7 * DAY, timestamp: DAY };

export interface TufRepoOptions {
  storage: TufStorage;
  /** `<data>/tuf/keys`: one `<role>.json` per role. */
  keysDir: string;
  /** Lifetime of each role's metadata, seconds. */
  expiries?: Partial<Record<RoleName, number>>;
  /** Re-sign a role when it expires within this many seconds. Default: a quarter of its lifetime. */
  margins?: Partial<Record<RoleName, number>>;
  /** Retention: newest targets kept per hardware id. Default 50. */
  maxTargetsPerHwid?: number;
  /** Refuse a targets.json larger than this (devices cap it too). Default 4 MiB. */
  maxTargetsBytes?: number;
  /** Versions of targets, snapshot and timestamp kept served (older ones are deleted if the storage can). Default 32. */
  keepVersions?: number;
  /** The clock (tests move it). */
  now?: () => Date;
  /**
   * Replicas sharing the storage: new online keys made here are offered through it, and keys
   * another replica made are taken from it (./key-handoff.ts). Without it, keys stay in keysDir.
   */
  handoff?: KeyHandoff;
  /** Told which keys were taken from another replica (the gateway logs it). */
  onKeysAdopted?: (taken: AdoptedKey[]) => void;
}

/** A key taken from another replica and written into this keys dir. */
export interface AdoptedKey {
  role: RoleName;
  keyId: string;
  path: string;
}

/** A target entry or name that cannot go into targets.json. */
export class InvalidTargetError extends Error {
  override name = "InvalidTargetError";
  constructor(name: string, why: string) {
    super(`Cannot add target "${name}": ${why}`);
  }
}

/** `rotate` was given something other than root, targets, snapshot or timestamp. */
export class InvalidRoleError extends Error {
  override name = "InvalidRoleError";
  constructor(role: string) {
    super(`Cannot rotate the key of role "${role}": roles are ${ROLE_NAMES.join(", ")}`);
  }
}

// `removeTargets` naming a target that is not in targets.json throws lib/api's TargetNotFoundError.
export { TargetNotFoundError };

/** The new targets.json would exceed the size devices accept. */
export class TargetsTooLargeError extends Error {
  override name = "TargetsTooLargeError";
  constructor(bytes: number, max: number) {
    super(`Cannot sign targets.json: ${bytes} bytes exceeds the ${max}-byte cap (remove targets or lower retention)`);
  }
}

/** targets.json changed since the caller read it (`expectedVersion`): read again and retry. */
export class TargetsVersionConflictError extends Error {
  override name = "TargetsVersionConflictError";
  constructor(
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`Cannot add targets: targets.json is at version ${actual}, not the version ${expected} they were made from (another publish won; read again and retry)`);
  }
}

/** A root.json handed to {@link TufRepo.updateRoot} is not a valid next root for this repository. */
export class InvalidRootError extends Error {
  override name = "InvalidRootError";
  constructor(why: string, options?: ErrorOptions) {
    super(`Cannot install root.json: ${why}`, options);
  }
}

/** A root.json handed to {@link TufRepo.updateRoot} lacks the signatures TUF requires (old and new root thresholds). */
export class RootNotTrustedError extends Error {
  override name = "RootNotTrustedError";
  constructor(why: string, options?: ErrorOptions) {
    super(`Cannot install root.json: ${why}`, options);
  }
}

/** The repository's stored metadata is missing or unreadable. */
export class TufRepoStateError extends Error {
  override name = "TufRepoStateError";
}

const FILE_NAME = /^(?:([1-9][0-9]{0,9})\.)?(root|timestamp|snapshot|targets)\.json$/;
const encoder = new TextEncoder();
/**
 * Another process (sharing the database) wrote the same version: reload and retry, with jitter.
 * Not doubling: the other writer is done within milliseconds, so a random 0 to 2 + 3·attempt ms, at most 50.
 */
const MAX_CONFLICT_RETRIES = 30;
const backoff = (attempt: number) => sleep(randomBetween(0, Math.min(50, 2 + attempt * 3)));
type RootJson = Parameters<typeof Root.fromJSON>[0];

interface Loaded<R extends RoleName> {
  record: TufRecord;
  signed: SignedOf<R>;
}
/** targets.json is kept as plain JSON: @tufjs/models objects cost ~0.2 ms per target to build. */
interface LoadedTargets {
  record: TufRecord;
  signed: { version: number; expires: string; targets: Record<string, TargetEntry> };
}
interface State {
  root: Loaded<"root">;
  targets: LoadedTargets;
  snapshot: Loaded<"snapshot">;
  timestamp: Loaded<"timestamp">;
}

/** What {@link TufRepo.refreshTimestamp} did. */
export interface RefreshResult {
  /** Roles given a new version. */
  refreshed: RoleName[];
  /** Roles near expiry that could not be re-signed because their key is offline. */
  needsOfflineKey: RoleName[];
}

/**
 * The gateway's TUF repository.
 *
 * @example
 * ```ts
 * const repo = await TufRepo.open({ storage, keysDir: `${data}/tuf/keys` });
 * await repo.addTargets({ "rpi-42": entry });
 * const bytes = await repo.metadata("timestamp.json"); // what GET /repo/timestamp.json returns
 * ```
 */
/** Whether the gateway holds a role's keys, and how long before the role's expiry its refresh timer re-signs it then (TufRepo.signing). */
export interface TufSigning {
  held: boolean;
  marginMs: number;
}

export class TufRepo {
  readonly #storage: TufStorage;
  readonly #keys: TufKeyStore;
  readonly #expiries: Record<RoleName, number>;
  readonly #margins: Record<RoleName, number>;
  readonly #maxPerHwid: number;
  readonly #maxTargetsBytes: number;
  readonly #now: () => Date;
  readonly #keepVersions: number;
  #queue: Promise<unknown> = Promise.resolve();
  readonly #views: SignedViews;
  /** Keys that sign views, per role, for the root version they were looked up under. */
  readonly #viewKeys = new Map<RoleName, { rootVersion: number; keys: Promise<TufKeyPair[]> }>();
  readonly #handoff: KeyHandoff | undefined;
  readonly #onKeysAdopted: ((taken: AdoptedKey[]) => void) | undefined;
  /** The root version whose handed-off keys were taken (read from the keys dir once). */
  #adoptedRoot: number | undefined;
  #adopting: Promise<AdoptedKey[]> | undefined;

  private constructor(opts: TufRepoOptions) {
    this.#storage = opts.storage;
    this.#keys = new TufKeyStore(opts.keysDir);
    this.#expiries = { ...DEFAULT_EXPIRIES, ...opts.expiries };
    const m = opts.margins ?? {};
    // A margin of half the lifetime or more would re-sign on every check.
    const margin = (r: RoleName) => Math.min(m[r] ?? this.#expiries[r] / 4, this.#expiries[r] / 2);
    this.#margins = { root: margin("root"), targets: margin("targets"), snapshot: margin("snapshot"), timestamp: margin("timestamp") };
    this.#maxPerHwid = opts.maxTargetsPerHwid ?? DEFAULT_MAX_TARGETS_PER_HWID;
    this.#maxTargetsBytes = opts.maxTargetsBytes ?? 4 << 20;
    this.#now = opts.now ?? (() => new Date());
    this.#keepVersions = Math.max(2, opts.keepVersions ?? 32);
    this.#handoff = opts.handoff;
    this.#onKeysAdopted = opts.onKeysAdopted;
    this.#views = new SignedViews({
      record: (role, version) => this.#storage.get(role, version),
      keys: (role) => this.#keysForViews(role),
    });
  }

  /** Opens the repository, creating keys and version 1 of every role if the storage is empty. */
  static async open(opts: TufRepoOptions): Promise<TufRepo> {
    const repo = new TufRepo(opts);
    await repo.#serial(() => repo.#init());
    await repo.adoptKeys();
    return repo;
  }

  /**
   * Takes the online keys that roots newer than the last one seen here trust, that another
   * replica made and this keys dir lacks (./key-handoff.ts). Each root's keys are taken once:
   * a key file an operator removes afterwards (to take targets offline) is not brought back.
   * Runs at open, before every signing change, when views are signed, and on the gateway's
   * timer, so a live replica has a rotated key within seconds.
   *
   * @throws {KeyHandoffError} A handed-off key does not open with this data dir's CA key.
   */
  async adoptKeys(): Promise<AdoptedKey[]> {
    if (!this.#handoff) return [];
    const rec = await this.#storage.getLatest("root");
    return rec ? this.#adopt(parseMetadata("root", rec.json).signed) : [];
  }

  #adopt(root: Root): Promise<AdoptedKey[]> {
    if (!this.#handoff || (this.#adoptedRoot !== undefined && root.version <= this.#adoptedRoot)) return Promise.resolve([]);
    // One at a time: a second caller waits for the first, then looks again.
    const run = async (): Promise<AdoptedKey[]> => {
      await prior;
      this.#adoptedRoot ??= await this.#keys.adoptedRoot();
      if (root.version <= this.#adoptedRoot) return [];
      const held = await this.#keys.held();
      const taken: AdoptedKey[] = [];
      for (const role of ["targets", "snapshot", "timestamp"] as const) {
        const ids = root.roles[role]?.keyIDs ?? [];
        for (const keyId of ids) {
          if (held.has(keyId)) continue;
          const pair = await this.#handoff!.take(keyId);
          if (pair) taken.push({ role, keyId, path: await this.#keys.adopt(role, pair, ids) });
        }
      }
      await this.#keys.setAdoptedRoot(root.version);
      this.#adoptedRoot = root.version;
      if (taken.length > 0) {
        this.#viewKeys.clear();
        this.#onKeysAdopted?.(taken);
      }
      return taken;
    };
    const prior = this.#adopting ?? Promise.resolve([]);
    const mine = run();
    this.#adopting = mine.catch(() => []);
    return mine;
  }

  /**
   * How often a refresh timer should call {@link refreshTimestamp}: a quarter of the shortest
   * re-signing margin, at most 5 minutes (so a shortened timestamp lifetime is still kept fresh).
   */
  get refreshIntervalMs(): number {
    return Math.max(50, Math.min(300_000, ...ROLE_NAMES.map((r) => (this.#margins[r] * 1000) / 4)));
  }

  /**
   * Whether this gateway holds the keys to sign `role` (a threshold of those root.json trusts), and
   * how long before the role expires its refresh timer re-signs it then: the dashboard tells a
   * person of targets near expiry only when they need one (gateway/ui/attention.tsx). Looks at the
   * keys dir each time, so a key file moved out is seen at once.
   */
  async signing(role: RoleName): Promise<TufSigning> {
    const held = await this.#keysFor(await this.#load(), role).then(
      () => true,
      (e: unknown) => {
        if (e instanceof SigningKeyUnavailableError) return false;
        throw e;
      },
    );
    return { held, marginMs: this.#margins[role] * 1000 };
  }

  // ---- reading ----

  /**
   * A metadata file as served under `/repo/`: `N.root.json`, `root.json` (latest),
   * `timestamp.json`, `snapshot.json`, `N.snapshot.json`, `targets.json`, `N.targets.json`.
   * Returns `undefined` for unknown names and absent versions (the route answers 404).
   *
   * With `view`, timestamp, snapshot and targets are the requesting device's signed view of
   * them (./views.ts): `view` is asked with the latest timestamp version and what the request
   * asks for (a superseded snapshot or targets version may be answered in the view the device's
   * timestamp' pinned), and a view whose key is "" (or no view) gets the main chain. The bytes,
   * or a promise of them; an error is thrown or rejects the promise.
   *
   * @throws {SigningKeyUnavailableError} A view must be signed and a key is offline.
   * @throws {ViewUnavailableError} The main metadata a view derives from is gone.
   */
  metadata(fileName: string, view?: ViewLookup): Uint8Array | undefined | Promise<Uint8Array | undefined> {
    // Answered without a promise when all it needs is at hand: timestamp.json while the storage
    // holds the latest one in memory (CachedTufStorage.latestNow), its view's bytes cached and the
    // rollout state fresh. That is the check-in's poll, every device, all day.
    if (fileName === "timestamp.json") {
      const hit = this.#storage.latestNow?.("timestamp");
      if (hit) {
        const rec = hit.rec;
        if (!rec) return undefined;
        const v = view?.(rec.version, "timestamp");
        return v instanceof Promise ? v.then((v) => this.#viewBytes(rec, v)) : this.#viewBytes(rec, v);
      }
    }
    return this.#read(fileName, view);
  }

  /** The bytes served for a record under a view (none, or one whose key is "": the record itself). */
  #viewBytes(rec: TufRecord, v: View | undefined): Uint8Array | Promise<Uint8Array> {
    return v?.key ? this.#views.bytes(rec, v) : encoder.encode(rec.json);
  }

  /** {@link metadata} read through the storage's promises. */
  async #read(fileName: string, view?: ViewLookup): Promise<Uint8Array | undefined> {
    const m = FILE_NAME.exec(fileName);
    if (!m) return undefined;
    const role = m[2] as RoleName;
    if (m[1] !== undefined && role === "timestamp") return undefined; // timestamp is never versioned
    const latest = view && role !== "root" ? await this.#storage.getLatest("timestamp") : undefined;
    const rec =
      role === "timestamp" ? latest ?? (await this.#storage.getLatest(role)) : m[1] === undefined ? await this.#storage.getLatest(role) : await this.#storage.get(role, Number(m[1]));
    if (!rec) return undefined;
    if (!latest) return this.#viewBytes(rec, undefined);
    const asked = role === "timestamp" ? "timestamp" : m[1] !== undefined && (await this.#superseded(rec, latest)) ? "superseded" : "current";
    let v = view!(latest.version, asked);
    if (v instanceof Promise) v = await v; // only when the rollout state is being reloaded
    return this.#viewBytes(rec, v);
  }

  /**
   * Whether a newer version of the record's role is stored: a check that began before it was
   * signed asks for this one. Judged by the role's newest record and by what `timestamp` (the
   * newest, which the answer builds on) pins: each role's newest is read through a cache that
   * may be up to a second older than the timestamp's (tuf-cache.ts) after a transition another
   * replica signed, and judged by it alone such a request would be answered in the new view.
   */
  async #superseded(rec: TufRecord, timestamp: TufRecord): Promise<boolean> {
    const newest = await this.#storage.getLatest(rec.role);
    if (newest !== undefined && newest.version > rec.version) return true;
    const pinned = (r: TufRecord, file: string) => (JSON.parse(r.json) as { signed: { meta?: Record<string, { version?: number }> } }).signed.meta?.[file]?.version;
    const snapshot = pinned(timestamp, "snapshot.json");
    if (snapshot === undefined || rec.role === "snapshot") return snapshot !== undefined && snapshot > rec.version;
    const snap = await this.#storage.get("snapshot", snapshot);
    const targets = snap && pinned(snap, "targets.json");
    return targets !== undefined && targets > rec.version;
  }

  /** The latest root.json bytes: the trust anchor given to devices at registration and to preload. */
  async trustedRoot(): Promise<Uint8Array> {
    const bytes = await this.metadata("root.json");
    if (!bytes) throw new TufRepoStateError("Cannot read root.json: the repository is not initialised");
    return bytes;
  }

  /** The targets of the latest signed targets.json and its version. */
  async targets(): Promise<{ targets: Record<string, TargetEntry>; version: number }> {
    const rec = await this.#storage.getLatest("targets");
    if (!rec) throw new TufRepoStateError("Cannot read targets.json: the repository is not initialised");
    const doc = JSON.parse(rec.json) as { signed: { targets?: Record<string, TargetEntry>; version: number } };
    return { targets: doc.signed.targets ?? {}, version: doc.signed.version };
  }

  /** Versions currently served, for /metrics and status. */
  async versions(): Promise<Record<RoleName, number>> {
    const s = await this.#load();
    return { root: s.root.signed.version, targets: s.targets.signed.version, snapshot: s.snapshot.signed.version, timestamp: s.timestamp.signed.version };
  }

  // ---- writing ----

  /**
   * Adds or replaces targets in one new targets.json version (all or nothing), applies retention,
   * and re-signs snapshot and timestamp.
   *
   * @throws {InvalidTargetError} A name or entry is invalid or unsafe to sign (target-policy.ts), or retention would drop a new target at once (older than the newest kept for its hardware ids): nothing is changed.
   * @throws {TargetsVersionConflictError} `opts.expectedVersion` is given and targets.json is at another version.
   * @throws {TargetsTooLargeError} The result would be too large for devices.
   * @throws {SigningKeyUnavailableError} The targets key is offline.
   */
  async addTargets(add: Record<string, TargetEntry>, opts: { expectedVersion?: number } = {}): Promise<{ version: number; pruned: string[] }> {
    for (const [name, entry] of Object.entries(add)) {
      if (!TARGET_NAME.test(name)) throw new InvalidTargetError(name, TARGET_NAME_RULE);
      if (!Value.Check(TargetEntry, entry)) {
        throw new InvalidTargetError(name, describeSchemaProblem(TargetEntry, entry, "the entry"));
      }
      const problem = targetEntryProblem(entry);
      if (problem) throw new InvalidTargetError(name, problem);
    }
    return this.#write(async (s) => {
      // Checked against the state this write builds on, so two publishers who read the same version cannot both win.
      if (opts.expectedVersion !== undefined && s.targets.signed.version !== opts.expectedVersion)
        throw new TargetsVersionConflictError(opts.expectedVersion, s.targets.signed.version);
      if (Object.keys(add).length === 0) return { records: [], result: { version: s.targets.signed.version, pruned: [] } };
      const current = targetsOf(s);
      const { kept, pruned } = pruneTargets({ ...current, ...structuredClone(add) }, this.#maxPerHwid);
      // A new target retention would drop in this very write is refused, not signed out unseen
      // (a publish answered 200 and "added" that no device could ever select).
      const dropped = Object.keys(add).find((name) => !Object.hasOwn(kept, name));
      if (dropped !== undefined) {
        const hwids = add[dropped]!.custom.hardwareIds;
        throw new InvalidTargetError(
          dropped,
          `version ${add[dropped]!.custom.version} is older than the ${this.#maxPerHwid} newest targets kept for hardware id ${hwids.join(", ")}, ` +
            "so it would be pruned at once: publish a higher version",
        );
      }
      return { records: await this.#chainFromTargets(s, kept), result: { version: s.targets.signed.version + 1, pruned } };
    });
  }

  /**
   * Removes targets in one new targets.json version and re-signs snapshot and timestamp.
   *
   * @throws {TargetNotFoundError} A name is not in targets.json: nothing is changed.
   */
  async removeTargets(names: string[]): Promise<{ version: number }> {
    return this.#write(async (s) => {
      const current = targetsOf(s);
      for (const n of names) if (!Object.hasOwn(current, n)) throw new TargetNotFoundError(`Cannot remove target "${n}": it is not in targets.json`);
      if (names.length === 0) return { records: [], result: { version: s.targets.signed.version } };
      for (const n of names) delete current[n];
      return { records: await this.#chainFromTargets(s, current), result: { version: s.targets.signed.version + 1 } };
    });
  }

  /**
   * Re-signs targets (same content), snapshot and timestamp with new versions, so that a device
   * whose view changed (a rollout moved) sees a higher version: TUF clients ignore metadata of
   * the version they already trust, whatever its content.
   *
   * @throws {SigningKeyUnavailableError} The targets key is offline.
   */
  async bumpViews(): Promise<{ version: number }> {
    return this.#write(async (s) => ({ records: await this.#chainFromTargets(s, targetsOf(s)), result: { version: s.timestamp.signed.version + 1 } }));
  }

  /**
   * Re-signs targets (same content), snapshot and timestamp at versions of at least `floor`'s, each
   * role its own, when any of them is below: devices that trust versions signed elsewhere since
   * (the gateway a backup was made of, which went on signing before it was lost) then accept them,
   * as TUF clients refuse a version lower than the one they trust (TUF §5.4 timestamp and §5.5
   * snapshot rollback checks, the latter also for the targets version it pins); a jump is fine to them. Roles at or above their
   * floor are only bumped by one, as every change bumps them. With the targets key offline,
   * targets stays as it is and is named in `needsOfflineKey`.
   *
   * @throws {SigningKeyUnavailableError} The snapshot or timestamp key is offline.
   */
  async leapVersions(floor: Record<"targets" | "snapshot" | "timestamp", number>): Promise<RefreshResult> {
    return this.#write(async (s) => {
      const out: RefreshResult = { refreshed: [], needsOfflineKey: [] };
      const behind = (["targets", "snapshot", "timestamp"] as const).filter((r) => s[r].signed.version < floor[r]);
      if (behind.length === 0) return { records: [], result: out };
      const at = (role: "targets" | "snapshot" | "timestamp") => Math.max(s[role].signed.version + 1, floor[role]);
      let targetsRec: TufRecord | undefined;
      if (behind.includes("targets")) {
        const keys = await this.#keysFor(s, "targets").catch((e: unknown) => {
          if (!(e instanceof SigningKeyUnavailableError)) throw e;
          out.needsOfflineKey.push("targets");
          return undefined;
        });
        if (keys) targetsRec = this.#targetsRecord(s, targetsOf(s), keys, at("targets"));
      }
      const snapshotRec = this.#snapshotRecord(s, targetsRec ?? s.targets.record, await this.#keysFor(s, "snapshot"), at("snapshot"));
      const records = [...(targetsRec ? [targetsRec] : []), snapshotRec, this.#timestampRecord(s, snapshotRec, await this.#keysFor(s, "timestamp"), at("timestamp"))];
      out.refreshed = records.map((r) => r.role);
      return { records, result: out };
    });
  }

  /**
   * Re-signs every role within its margin of expiry: timestamp (and snapshot, targets, root when
   * they are near expiry too). Cheap when nothing is due; call it from a timer
   * ({@link startTufRefreshTimer}).
   */
  async refreshTimestamp(): Promise<RefreshResult> {
    return this.#write(async (s) => {
      const now = this.#now().getTime();
      // Due near expiry; snapshot and timestamp also when they outlive a fresh signature (their
      // lifetime was shortened since). Root may be signed offline for longer on purpose.
      const due = (role: RoleName, signed: { expires: string }) => {
        const left = new Date(signed.expires).getTime() - now;
        return left <= this.#margins[role] * 1000 || ((role === "snapshot" || role === "timestamp") && left > this.#expiries[role] * 1000);
      };
      const out: RefreshResult = { refreshed: [], needsOfflineKey: [] };
      const records: TufRecord[] = [];
      const tryKey = async (role: RoleName) => {
        try {
          return await this.#keysFor(s, role);
        } catch (e) {
          if (!(e instanceof SigningKeyUnavailableError)) throw e;
          out.needsOfflineKey.push(role);
          return undefined;
        }
      };
      if (due("root", s.root.signed)) {
        const key = await tryKey("root");
        if (key) records.push(this.#sign("root", Root.fromJSON(this.#rootJson(s)), key));
      }
      let targetsRec: TufRecord | undefined;
      if (due("targets", s.targets.signed)) {
        const key = await tryKey("targets");
        if (key) records.push((targetsRec = this.#targetsRecord(s, targetsOf(s), key)));
      }
      let snapshotRec: TufRecord | undefined;
      if (targetsRec || due("snapshot", s.snapshot.signed)) {
        records.push((snapshotRec = this.#snapshotRecord(s, targetsRec ?? s.targets.record, await this.#keysFor(s, "snapshot"))));
      }
      if (snapshotRec || due("timestamp", s.timestamp.signed)) {
        records.push(this.#timestampRecord(s, snapshotRec ?? s.snapshot.record, await this.#keysFor(s, "timestamp")));
      }
      out.refreshed = records.map((r) => r.role);
      return { records, result: out };
    });
  }

  /**
   * Replaces a role's key with a new one: a new root version lists it (signed by the old and
   * the new root key when root rotates), and the role's metadata is re-signed with it at once.
   * Devices follow through `N.root.json`.
   *
   * @throws {SigningKeyUnavailableError} The root key (or for a root rotation, the old root key) is offline.
   */
  async rotate(role: RoleName): Promise<{ keyId: string; rootVersion: number }> {
    if (!ROLE_NAMES.includes(role)) throw new InvalidRoleError(String(role));
    return this.#serial(async () => {
      for (let attempt = 0; ; attempt++) {
        const s = await this.#load();
        const rootKeys = await this.#keysFor(s, "root");
        // Keys the chain needs must be at hand before a new root makes the old ones useless.
        const dependents: Partial<Record<RoleName, TufKeyPair[]>> = {};
        if (role === "targets" || role === "snapshot") dependents.snapshot = await this.#keysFor(s, "snapshot");
        if (role !== "root") dependents.timestamp = await this.#keysFor(s, "timestamp");
        const next = await this.#keys.stageNext(role);
        let records: TufRecord[];
        try {
          // The other replicas take it from the database once they see the root below (root keys stay here).
          if (role !== "root") await this.#handoff?.offer(next);
          const rootJson = this.#rootJson(s, { role, key: next });
          records = [this.#sign("root", Root.fromJSON(rootJson), role === "root" ? [...rootKeys, next] : rootKeys)];
          if (role === "targets") {
            const t = this.#targetsRecord(s, targetsOf(s), [next]);
            const sn = this.#snapshotRecord(s, t, dependents.snapshot!);
            records.push(t, sn, this.#timestampRecord(s, sn, dependents.timestamp!));
          } else if (role === "snapshot") {
            const sn = this.#snapshotRecord(s, s.targets.record, [next]);
            records.push(sn, this.#timestampRecord(s, sn, dependents.timestamp!));
          } else if (role === "timestamp") {
            records.push(this.#timestampRecord(s, s.snapshot.record, [next]));
          }
          await this.#storage.put(records);
        } catch (e) {
          await this.#keys.discardNext(role);
          if (!(e instanceof TufVersionConflictError) || attempt >= MAX_CONFLICT_RETRIES) throw e;
          await backoff(attempt);
          continue;
        }
        await this.#keys.promoteNext(role);
        await this.#prune(records);
        return { keyId: next.keyId, rootVersion: s.root.signed.version + 1 };
      }
    });
  }

  /**
   * Installs a new root.json signed elsewhere (the offline root ceremony, docs/keys.md):
   * the next version, signed by a threshold of the current root's root keys and of its
   * own. Roles whose keys it changes are re-signed at once with the held keys it names;
   * root keys it no longer lists are deleted from the keys dir.
   *
   * @throws {InvalidRootError} Not root metadata, not the next version, expired, or names
   *   snapshot/timestamp keys (or changed targets keys) the gateway does not hold.
   * @throws {RootNotTrustedError} Fewer signatures than the old or the new root threshold.
   */
  async updateRoot(bytes: Uint8Array | string): Promise<{ version: number; refreshed: RoleName[] }> {
    let next: Metadata<Root>;
    try {
      next = parseMetadata("root", bytes);
    } catch (cause) {
      throw new InvalidRootError(`not root metadata: ${(cause as Error).message}`, { cause });
    }
    return this.#serial(async () => {
      for (let attempt = 0; ; attempt++) {
        const s = await this.#load();
        const cur = s.root.signed;
        const n = next.signed;
        if (n.version !== cur.version + 1) throw new InvalidRootError(`it is version ${n.version}; the next root version is ${cur.version + 1}`);
        if (new Date(n.expires).getTime() <= this.#now().getTime()) throw new InvalidRootError(`it expired at ${n.expires}`);
        if (!n.consistentSnapshot) throw new InvalidRootError("consistent_snapshot must be true (the gateway serves N.snapshot.json and N.targets.json)");
        for (const role of ROLE_NAMES) {
          const r = n.roles[role];
          if (!r) throw new InvalidRootError(`it has no ${role} role`);
          if (!Number.isSafeInteger(r.threshold) || r.threshold < 1 || r.threshold > r.keyIDs.length)
            throw new InvalidRootError(`the ${role} threshold ${r.threshold} is not between 1 and its ${r.keyIDs.length} keys`);
          for (const id of r.keyIDs) if (!n.keys[id]) throw new InvalidRootError(`the ${role} key ${id} is not in its keys`);
        }
        // TUF §5.3.4/§5.3.5: a threshold of the trusted root's keys and of the new root's own keys.
        const trusted = parseMetadata("root", s.root.record.json);
        for (const [who, signer] of [["current", trusted], ["new", next]] as const) {
          try {
            signer.verifyDelegate("root", next);
          } catch (cause) {
            const r = signer.signed.roles.root!;
            throw new RootNotTrustedError(`it is not signed by ${r.threshold} of the ${r.keyIDs.length} ${who} root keys (${(cause as Error).message})`, { cause });
          }
        }
        const changed = (role: RoleName) => {
          const a = cur.roles[role]!;
          const b = n.roles[role]!;
          return a.threshold !== b.threshold || a.keyIDs.length !== b.keyIDs.length || a.keyIDs.some((id) => !b.keyIDs.includes(id));
        };
        const held = async (role: RoleName) => {
          try {
            return await this.#keysFor(s, role, n);
          } catch (e) {
            if (!(e instanceof SigningKeyUnavailableError)) throw e;
            throw new InvalidRootError(`the gateway does not hold ${n.roles[role]!.threshold} of the ${role} keys it lists: put the key files in ${this.#keys.dir} first (${e.message})`, { cause: e });
          }
        };
        // Snapshot and timestamp must keep being signed online; targets may stay offline if unchanged.
        const snapshotKeys = await held("snapshot");
        const timestampKeys = await held("timestamp");
        const records: TufRecord[] = [{ role: "root", version: n.version, json: new TextDecoder().decode(serializeMetadata(next)), expires: n.expires }];
        let targetsRec: TufRecord | undefined;
        if (changed("targets")) records.push((targetsRec = this.#targetsRecord(s, targetsOf(s), await held("targets"))));
        let snapshotRec: TufRecord | undefined;
        if (targetsRec || changed("snapshot")) records.push((snapshotRec = this.#snapshotRecord(s, targetsRec ?? s.targets.record, snapshotKeys)));
        if (snapshotRec || changed("timestamp")) records.push(this.#timestampRecord(s, snapshotRec ?? s.snapshot.record, timestampKeys));
        // Online keys this root brings (held here only): offered to the other replicas before it is stored.
        for (const role of ["targets", "snapshot", "timestamp"] as const) {
          if (role === "targets" && !targetsRec) continue;
          const keys = role === "targets" ? await held("targets") : role === "snapshot" ? snapshotKeys : timestampKeys;
          for (const k of keys) if (!cur.roles[role]!.keyIDs.includes(k.keyId)) await this.#handoff?.offer(k);
        }
        try {
          await this.#storage.put(records);
        } catch (e) {
          if (!(e instanceof TufVersionConflictError) || attempt >= MAX_CONFLICT_RETRIES) throw e;
          await backoff(attempt);
          continue;
        }
        await this.#prune(records);
        // An old root key left on the server could still sign for devices that have not updated yet.
        const stillTrusted = new Set(Object.values(n.roles).flatMap((r) => r.keyIDs));
        await this.#keys.forget(cur.roles.root!.keyIDs.filter((id) => !stillTrusted.has(id)));
        return { version: n.version, refreshed: records.map((r) => r.role) };
      }
    });
  }

  // ---- internals ----

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  /** One serialised write: build records from the latest state, store them atomically, retry if another process won. */
  #write<T>(build: (s: State) => Promise<{ records: TufRecord[]; result: T }>): Promise<T> {
    return this.#serial(async () => {
      for (let attempt = 0; ; attempt++) {
        const { records, result } = await build(await this.#load());
        if (records.length === 0) return result;
        try {
          await this.#storage.put(records);
          await this.#prune(records);
          return result;
        } catch (e) {
          if (!(e instanceof TufVersionConflictError) || attempt >= MAX_CONFLICT_RETRIES) throw e;
          await backoff(attempt);
        }
      }
    });
  }

  async #init(): Promise<void> {
    if (await this.#storage.getLatest("root")) return;
    const keys = {
      root: await this.#keys.initialKey("root"),
      targets: await this.#keys.initialKey("targets"),
      snapshot: await this.#keys.initialKey("snapshot"),
      timestamp: await this.#keys.initialKey("timestamp"),
    };
    const now = this.#now();
    const rootJson = {
      _type: "root",
      spec_version: "1.0.31",
      version: 1,
      expires: expiresAt(now, this.#expiries.root),
      consistent_snapshot: true,
      keys: Object.fromEntries(Object.values(keys).map((k) => [k.keyId, modelKey(k).toJSON()])),
      roles: Object.fromEntries(Object.entries(keys).map(([r, k]) => [r, { keyids: [k.keyId], threshold: 1 }])),
    };
    const root = this.#sign("root", Root.fromJSON(rootJson), [keys.root]);
    const targetsExpires = expiresAt(now, this.#expiries.targets);
    const targetsJson = signJson({ _type: "targets", spec_version: "1.0.31", version: 1, expires: targetsExpires, targets: {} }, [keys.targets]);
    const targets: TufRecord = { role: "targets", version: 1, json: new TextDecoder().decode(targetsJson), expires: targetsExpires };
    const snapshot = this.#sign("snapshot", new Snapshot({ version: 1, specVersion: "1.0.31", expires: expiresAt(now, this.#expiries.snapshot), meta: { "targets.json": metaFileFor(encoder.encode(targets.json), 1) } }), [keys.snapshot]);
    const timestamp = this.#sign("timestamp", new Timestamp({ version: 1, specVersion: "1.0.31", expires: expiresAt(now, this.#expiries.timestamp), snapshotMeta: metaFileFor(encoder.encode(snapshot.json), 1) }), [keys.timestamp]);
    try {
      await this.#storage.put([root, targets, snapshot, timestamp]);
    } catch (e) {
      if (!(e instanceof TufVersionConflictError)) throw e; // another process initialised it first
    }
  }

  async #load(): Promise<State> {
    const one = async <R extends RoleName>(role: R): Promise<Loaded<R>> => {
      const record = await this.#storage.getLatest(role);
      if (!record) throw new TufRepoStateError(`Cannot load TUF ${role}.json: the repository is not initialised`);
      try {
        return { record, signed: parseMetadata(role, record.json).signed };
      } catch (cause) {
        throw new TufRepoStateError(`Cannot load TUF ${role}.json v${record.version}: ${(cause as Error).message}`, { cause });
      }
    };
    const loadTargets = async (): Promise<LoadedTargets> => {
      const record = await this.#storage.getLatest("targets");
      if (!record) throw new TufRepoStateError("Cannot load TUF targets.json: the repository is not initialised");
      const signed = (JSON.parse(record.json) as { signed?: LoadedTargets["signed"] }).signed;
      if (typeof signed?.version !== "number" || typeof signed.expires !== "string")
        throw new TufRepoStateError(`Cannot load TUF targets.json v${record.version}: not targets metadata`);
      return { record, signed: { ...signed, targets: signed.targets ?? {} } };
    };
    const [root, targets, snapshot, timestamp] = await Promise.all([one("root"), loadTargets(), one("snapshot"), one("timestamp")]);
    await this.#adopt(root.signed); // keys another replica rotated, before anything is signed
    return { root, targets, snapshot, timestamp };
  }

  /** Old versions no client will ask for again: a client mid-refresh needs only the newest few. */
  async #prune(records: TufRecord[]): Promise<void> {
    if (!this.#storage.deleteBefore) return;
    for (const r of records) {
      if (r.role !== "root" && r.version > this.#keepVersions) await this.#storage.deleteBefore(r.role, r.version - this.#keepVersions + 1);
    }
  }

  /** The keys that sign views of `role`: those the latest root trusts, looked up once per root version. */
  async #keysForViews(role: RoleName): Promise<TufKeyPair[]> {
    const rec = await this.#storage.getLatest("root");
    if (!rec) throw new TufRepoStateError("Cannot load TUF root.json: the repository is not initialised");
    const hit = this.#viewKeys.get(role);
    if (hit?.rootVersion === rec.version) return hit.keys;
    const root = parseMetadata("root", rec.json).signed;
    await this.#adopt(root);
    const r = root.roles[role];
    const keys = this.#keys.signingKeys(role, r?.keyIDs ?? [], r?.threshold ?? 1);
    // The targets key may be moved out of the keys dir (docs/keys.md, "Targets signed offline"): looked
    // for each time, so no view is signed with a copy kept in memory after it went (a targets' is
    // signed once per view key and targets version, so this costs a read of the dir then).
    if (role === "targets") return keys;
    this.#viewKeys.set(role, { rootVersion: rec.version, keys });
    keys.catch(() => this.#viewKeys.get(role)?.keys === keys && this.#viewKeys.delete(role)); // offline now: look again next time
    return keys;
  }

  /** The held keys root trusts for `role`, as many as its threshold needs. */
  #keysFor(s: State, role: RoleName, root: Root = s.root.signed): Promise<TufKeyPair[]> {
    const r = root.roles[role];
    return this.#keys.signingKeys(role, r?.keyIDs ?? [], r?.threshold ?? 1);
  }

  #sign(role: RoleName, signed: Signed, keys: TufKeyPair[]): TufRecord {
    return { role, version: signed.version, json: new TextDecoder().decode(signMetadata(signed, keys)), expires: signed.expires };
  }

  /** The next root version, optionally with `change.role` given the new key. */
  #rootJson(s: State, change?: { role: RoleName; key: TufKeyPair }): RootJson {
    const json = structuredClone(s.root.signed.toJSON()) as {
      version: number;
      expires: string;
      keys: Record<string, unknown>;
      roles: Record<string, { keyids: string[]; threshold: number }>;
    };
    json.version = s.root.signed.version + 1;
    json.expires = expiresAt(this.#now(), this.#expiries.root);
    if (change) {
      json.roles[change.role] = { keyids: [change.key.keyId], threshold: 1 };
      json.keys[change.key.keyId] = modelKey(change.key).toJSON();
      const used = new Set(Object.values(json.roles).flatMap((r) => r.keyids));
      for (const id of Object.keys(json.keys)) if (!used.has(id)) delete json.keys[id];
    }
    return json as unknown as RootJson;
  }

  #targetsRecord(s: State, targets: Record<string, TargetEntry>, keys: TufKeyPair[], version = s.targets.signed.version + 1): TufRecord {
    const expires = expiresAt(this.#now(), this.#expiries.targets);
    const json = new TextDecoder().decode(signJson({ _type: "targets", spec_version: "1.0.31", version, expires, targets }, keys));
    const rec: TufRecord = { role: "targets", version, json, expires };
    const bytes = encoder.encode(rec.json).length;
    if (bytes > this.#maxTargetsBytes) throw new TargetsTooLargeError(bytes, this.#maxTargetsBytes);
    return rec;
  }

  #snapshotRecord(s: State, targets: TufRecord, keys: TufKeyPair[], version = s.snapshot.signed.version + 1): TufRecord {
    const snapshot = new Snapshot({
      version,
      specVersion: "1.0.31",
      expires: expiresAt(this.#now(), this.#expiries.snapshot),
      meta: { "targets.json": metaFileFor(encoder.encode(targets.json), targets.version) },
    });
    return this.#sign("snapshot", snapshot, keys);
  }

  #timestampRecord(s: State, snapshot: TufRecord, keys: TufKeyPair[], version = s.timestamp.signed.version + 1): TufRecord {
    const ts = new Timestamp({
      version,
      specVersion: "1.0.31",
      expires: expiresAt(this.#now(), this.#expiries.timestamp),
      snapshotMeta: metaFileFor(encoder.encode(snapshot.json), snapshot.version),
    });
    return this.#sign("timestamp", ts, keys);
  }

  /** New targets, snapshot and timestamp records for a changed target set. */
  async #chainFromTargets(s: State, targets: Record<string, TargetEntry>): Promise<TufRecord[]> {
    const t = this.#targetsRecord(s, targets, await this.#keysFor(s, "targets"));
    const sn = this.#snapshotRecord(s, t, await this.#keysFor(s, "snapshot"));
    return [t, sn, this.#timestampRecord(s, sn, await this.#keysFor(s, "timestamp"))];
  }
}

/** A private copy of the current targets, to modify. */
const targetsOf = (s: State): Record<string, TargetEntry> => ({ ...s.targets.signed.targets });
