/**
 * The targets a publish makes (SPEC §2): one per hardware id, named
 * `<hwid>-<version>`, carrying every tag the git ref maps to, the apps' pinned
 * URIs and the containers commit. The version is one more than the highest
 * existing one (numerically), unless the user names it.
 *
 * @module
 */
import { EMPTY_SHA256, targetName, type TargetEntry } from "../../lib/api/target.ts";

export class TargetVersionError extends Error {
  override name = "TargetVersionError";
}

/** The next version: one above every existing target's `custom.version`. */
export function nextVersion(existing: Record<string, TargetEntry>): number {
  let max = 0;
  for (const t of Object.values(existing)) {
    const v = Number(t?.custom?.version);
    if (Number.isSafeInteger(v) && v > max) max = v;
  }
  return max + 1;
}

/** The default hardware id for a platform (`linux/amd64` → `x86_64-linux`, `linux/arm64` → `arm64-linux`). */
export function defaultHwid(platform: { architecture: string }): string {
  const a = platform.architecture;
  return a === "amd64" ? "x86_64-linux" : a === "arm64" ? "arm64-linux" : a === "arm" ? "arm-linux" : `${a}-linux`;
}

export interface TargetSpec {
  hwids: string[];
  tags: string[];
  version: number;
  apps: Record<string, string>;
  containersSha: string;
  createdAt?: string;
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
  const apps: Record<string, { uri: string }> = {};
  for (const name of Object.keys(spec.apps).sort()) apps[name] = { uri: spec.apps[name]! };
  for (const hwid of spec.hwids) {
    const name = targetName(hwid, spec.version);
    if (existing[name]) throw new TargetVersionError(`Cannot make target ${name}: it already exists; choose another --version`);
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
      },
    };
  }
  return out;
}
