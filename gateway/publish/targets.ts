/**
 * The targets a publish makes: one per hardware id, named `<hwid>-<version>`,
 * carrying every tag the git ref maps to, the apps' pinned URIs (with the
 * unpacked size of each image layer where publish knows it) and the
 * containers commit, marked when the work tree had uncommitted changes (the
 * content is then not that commit's). The version is one more than the highest
 * existing one (numerically), and than the highest a device reports running,
 * unless the user names it: a gateway restored from a backup older than its
 * last publish lacks the targets published since, and a number its devices
 * run would name other content under a name they take for the one they run
 * (and never update from).
 *
 * @module
 */
import { EMPTY_SHA256, TARGET_NAME, TARGET_NAME_RULE, targetName, targetVersionNumber, versionOfTargetName, type TargetEntry } from "../../lib/api/target.ts";

export class TargetVersionError extends Error {
  override name = "TargetVersionError";
}

/**
 * The next version: one above every existing target's `custom.version` and every version in
 * `running`, the target names the gateway's devices report running (GET /admin/targets `running`).
 *
 * @example
 * ```ts
 * nextVersion({ "x86_64-linux-1": v1 }, ["x86_64-linux-3"]); // 4: a device runs 3, published on a gateway since lost
 * ```
 */
export function nextVersion(existing: Record<string, TargetEntry>, running: readonly string[] = []): number {
  let max = 0;
  for (const v of [...Object.values(existing).map((t) => targetVersionNumber(t?.custom?.version)), ...running.map(versionOfTargetName)]) {
    if (v !== undefined && v > max) max = v;
  }
  return max + 1;
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
