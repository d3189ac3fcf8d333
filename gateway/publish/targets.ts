/**
 * The targets a publish makes: one per hardware id, named `<hwid>-<version>`,
 * carrying every tag the git ref maps to, the apps' pinned URIs (with the
 * unpacked size of each image layer where publish knows it) and the
 * containers commit, marked when the work tree had uncommitted changes (the
 * content is then not that commit's). The version is one more than the highest
 * existing one (numerically), and than the highest a device reports running
 * up to RUNNING_LEAP_MAX above it, unless the user names it: a gateway restored
 * from a backup older than its last publish lacks the targets published since,
 * and a number its devices run would name other content under a name they take
 * for the one they run (and never update from). A device says what it runs
 * itself (its check-in's header), so one device's claim moves the numbering
 * that far at most: a claim of 999999999999999 used to make every publish fail
 * (16 digits), one of 10^14 to leap there. Claims further up are never reused
 * as names, and said (runningIgnored).
 *
 * @module
 */
import { EMPTY_SHA256, TARGET_NAME, TARGET_NAME_RULE, targetName, targetVersionNumber, versionOfTargetName, type TargetEntry } from "../../lib/api/target.ts";

export class TargetVersionError extends Error {
  override name = "TargetVersionError";
}

/** How far above the highest existing version a name devices report running may lift the next one: more publishes than a lost gateway plausibly made since its last backup. */
export const RUNNING_LEAP_MAX = 1000;

/**
 * The next version: one above every existing target's `custom.version` and every version in
 * `running` (the target names the gateway's devices report running, GET /admin/targets `running`)
 * at most RUNNING_LEAP_MAX above them, and none that a device reports running.
 *
 * @example
 * ```ts
 * nextVersion({ "x86_64-linux-1": v1 }, ["x86_64-linux-3"]); // 4: a device runs 3, published on a gateway since lost
 * nextVersion({ "x86_64-linux-1": v1 }, ["x86_64-linux-999999999999999"]); // 2: a claim too far up moves nothing
 * ```
 */
export function nextVersion(existing: Record<string, TargetEntry>, running: readonly string[] = []): number {
  const max = highestVersion(existing);
  const claimed = new Set(running.map(versionOfTargetName).filter((v): v is number => v !== undefined));
  let next = max + 1;
  for (const v of claimed) if (v >= next && v <= max + RUNNING_LEAP_MAX) next = v + 1;
  while (claimed.has(next)) next++; // never a name a device runs, near or far
  return next;
}

/** The names devices report running that lie too far above the existing versions to move the next one (nextVersion), for publish to say. */
export function runningIgnored(existing: Record<string, TargetEntry>, running: readonly string[] = []): string[] {
  const max = highestVersion(existing);
  return running.filter((n) => (versionOfTargetName(n) ?? 0) > max + RUNNING_LEAP_MAX);
}

function highestVersion(existing: Record<string, TargetEntry>): number {
  let max = 0;
  for (const t of Object.values(existing)) {
    const v = targetVersionNumber(t?.custom?.version);
    if (v !== undefined && v > max) max = v;
  }
  return max;
}

export interface TargetSpec {
  hwids: string[];
  tags: string[];
  version: number;
  apps: Record<string, string>;
  /** Per app: layer digest → unpacked bytes (recorded as `uncompressedLayerSizes` when not empty). */
  uncompressedLayerSizes?: Record<string, Record<string, number>>;
  containersSha: string;
  /** The work tree had uncommitted changes: recorded as `containersDirty: true`, since the apps are not `containersSha`'s content. */
  containersDirty?: boolean;
  createdAt?: string;
}

/**
 * Checks that the targets of `version` can be made: each name valid and none already in `existing`.
 * Publish calls it before anything is built when --version is given, and again when it makes them.
 *
 * @throws {TargetVersionError} Naming the first target that cannot be made.
 */
export function checkVersionFree(hwids: readonly string[], version: number, existing: Record<string, TargetEntry>, running: readonly string[] = []): void {
  for (const hwid of hwids) {
    const name = targetName(hwid, version);
    if (!TARGET_NAME.test(name)) throw new TargetVersionError(`Cannot make target ${name}: ${TARGET_NAME_RULE}`);
    if (existing[name]) throw new TargetVersionError(`Cannot make target ${name}: it already exists; choose another --version`);
    if (running.includes(name))
      throw new TargetVersionError(
        `Cannot make target ${name}: devices of this gateway run a target of that name that targets.json no longer holds (removed, pruned, or published on a gateway since lost); choose --version ${nextVersion(existing, running)} or higher`,
      );
  }
}

/**
 * Builds the target entries.
 *
 * @example
 * ```ts
 * makeTargets({ hwids: ["x86_64-linux"], tags: ["master"], version: 3, apps: { httpd: uri }, containersSha: sha });
 * // { "x86_64-linux-3": { length: 0, hashes: { sha256: EMPTY_SHA256 }, custom: { version: "3", ... } } }
 * ```
 * @throws {TargetVersionError} If a target of that name already exists in `existing`.
 */
export function makeTargets(spec: TargetSpec, existing: Record<string, TargetEntry> = {}): Record<string, TargetEntry> {
  const createdAt = spec.createdAt ?? new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
  const out: Record<string, TargetEntry> = {};
  const apps: Record<string, { uri: string; uncompressedLayerSizes?: Record<string, number> }> = {};
  for (const name of Object.keys(spec.apps).sort()) {
    const sizes = spec.uncompressedLayerSizes?.[name];
    apps[name] = { uri: spec.apps[name]!, ...(sizes && Object.keys(sizes).length ? { uncompressedLayerSizes: sizes } : {}) };
  }
  checkVersionFree(spec.hwids, spec.version, existing);
  for (const hwid of spec.hwids) {
    const name = targetName(hwid, spec.version);
    out[name] = {
      length: 0,
      hashes: { sha256: EMPTY_SHA256 },
      custom: {
        version: String(spec.version),
        hardwareIds: [hwid],
        tags: [...spec.tags],
        targetFormat: "OSTREE",
        docker_compose_apps: apps,
        createdAt,
        "containers-sha": spec.containersSha,
        ...(spec.containersDirty ? { containersDirty: true } : {}),
      },
    };
  }
  return out;
}
