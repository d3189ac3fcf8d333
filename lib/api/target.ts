/**
 * The signed target entry: what `gateway publish` makes, the gateway
 * signs into targets.json, and fioup and preload select from.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { Type, type Static } from "@sinclair/typebox";

/** sha256 of zero bytes: container-only targets download nothing through TUF. */
export const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** What tags, hardware ids and app names are: a name that reads the same in a file, a list, a path and on a terminal. */
const PLAIN_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

/**
 * A target tag: what a device follows and a target carries (`gateway publish` takes them from
 * the factory config's tagging, `fioup register --tag`, registration tokens, `gateway devices
 * tag`). A plain name, so it reads the same in sota.toml's comma-separated list, in the
 * x-ats-tags header and on a terminal; a device given a tag no target can carry would never be
 * offered an update, so every way in refuses one.
 */
export const Tag = Type.String({ pattern: PLAIN_NAME.source, expected: "a tag (letters, digits, . _ -; at most 128, starting with a letter or digit)" });
/** Whether `s` is a tag by {@link Tag}'s rule. */
export const isTag = (s: string): boolean => PLAIN_NAME.test(s);

/** A hardware id: what a target runs on and a device is, by the same plain-name rule and for the same reason as a tag. */
export const HardwareId = Type.String({ pattern: PLAIN_NAME.source, expected: "a hardware id (letters, digits, . _ -; at most 128, starting with a letter or digit)" });
/** Whether `s` is a hardware id by {@link HardwareId}'s rule. */
export const isHardwareId = (s: string): boolean => PLAIN_NAME.test(s);

/** A compose app's name in a target (its directory in the containers repo). */
export const AppName = Type.String({ pattern: PLAIN_NAME.source, expected: "an app name (letters, digits, . _ -; at most 128)" });
/** Whether `s` is an app name by {@link AppName}'s rule (also a safe directory name). */
export const isAppName = (s: string): boolean => PLAIN_NAME.test(s);

export const ComposeAppRef = Type.Object(
  {
    uri: Type.String({ maxLength: 1024 }),
    /** Layer digest → its unpacked size in bytes, for the layers publish saw unpacked (optional; see docs/publishing.md). */
    uncompressedLayerSizes: Type.Optional(Type.Record(Type.String({ pattern: "^sha256:[0-9a-f]{64}$" }), Type.Integer({ minimum: 0 }))),
  },
  { additionalProperties: true },
);

/** A target's version (`custom.version`): what `fioup update VERSION` and `preload --target` name. */
export const TargetVersion = Type.String({ pattern: "^[0-9]{1,15}$", expected: "a target version: 1-15 digits, as `fioup check` lists them" });
const TARGET_VERSION = new RegExp(TargetVersion.pattern!);
/** Whether `v` is a target version ({@link TargetVersion}), for code that tests a string rather than a message. */
export const isTargetVersion = (v: string): boolean => TARGET_VERSION.test(v);
/** The number a target version ({@link TargetVersion}) stands for, what versions are compared by; undefined for anything else. */
export const targetVersionNumber = (v: unknown): number | undefined => {
  const s = String(v ?? "");
  return isTargetVersion(s) ? Number(s) : undefined;
};

export const TargetCustom = Type.Object(
  {
    version: TargetVersion,
    // Read leniently, as tags are below.
    hardwareIds: Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { minItems: 1, maxItems: 64 }),
    // Not Tag (nor HardwareId above): read leniently, so a target signed before the rule still selects (publish makes only those).
    tags: Type.Array(Type.String({ minLength: 1, maxLength: 128 }), { maxItems: 64 }),
    targetFormat: Type.Optional(Type.String()),
    docker_compose_apps: Type.Record(AppName, ComposeAppRef),
    createdAt: Type.Optional(Type.String()),
    "containers-sha": Type.Optional(Type.String()),
    /**
     * true: published from a work tree with uncommitted changes, so the apps are not what `containers-sha` holds (their
     * images are tagged `<short hash>-dirty`). Absent from a clean publish, and from publishers before it.
     */
    containersDirty: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: true },
);
export type TargetCustom = Static<typeof TargetCustom>;

export const TargetEntry = Type.Object({
  length: Type.Integer({ minimum: 0 }),
  hashes: Type.Record(Type.String(), Type.String()),
  custom: TargetCustom,
});
export type TargetEntry = Static<typeof TargetEntry>;

/**
 * What a target makes a device run, as one digest: its apps (each pinned to a digest) and the
 * hashes of its file. A name can come back with other content (a target removed and its version
 * published again, a gateway restored from a backup older than a publish): a device that marked
 * the name bad compares this, so it takes the fix and still refuses the content that failed.
 */
export function targetContent(entry: Pick<TargetEntry, "hashes" | "custom">): string {
  const apps = Object.entries(entry.custom?.docker_compose_apps ?? {})
    .map(([name, app]) => [name, app.uri] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const hashes = Object.entries(entry.hashes ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return createHash("sha256").update(JSON.stringify({ apps, hashes })).digest("hex");
}

/**
 * Layer digest → unpacked size, as the apps of the given targets record them
 * (`uncompressedLayerSizes`; a digest names the same bytes in every target).
 *
 * @example
 * ```ts
 * recordedLayerSizes(update.target.entry.custom).get(layer.digest); // 52428800, or undefined
 * ```
 */
export function recordedLayerSizes(...customs: (Pick<TargetCustom, "docker_compose_apps"> | undefined)[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const custom of customs) {
    for (const app of Object.values(custom?.docker_compose_apps ?? {})) {
      for (const [d, n] of Object.entries(app.uncompressedLayerSizes ?? {})) out.set(d, n);
    }
  }
  return out;
}

/** A target as code passes it around: its name in targets.json plus the entry. */
export interface Target {
  name: string;
  entry: TargetEntry;
}

/** What a target name may be: 1-200 of A-Z a-z 0-9 . _ + -, starting with a letter or digit (the one limit everywhere). */
export const TARGET_NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._+-]{0,199}$";
export const TARGET_NAME = new RegExp(TARGET_NAME_PATTERN);
export const TARGET_NAME_RULE = "names are 1-200 of A-Z a-z 0-9 . _ + - and start with a letter or digit";

/**
 * No target by that name, or none that matches what was asked (hardware id,
 * tags, version): the gateway when asked to remove one, fioup when selecting.
 */
export class TargetNotFoundError extends Error {
  override name = "TargetNotFoundError";
}

/**
 * The containers commit a target was published from, as people read it: its first 12 hex digits, with `-dirty` when it
 * was published from a work tree with uncommitted changes (`containersDirty`); undefined when the target names none.
 *
 * @example
 * ```ts
 * containersCommitText({ ...custom, "containers-sha": sha, containersDirty: true }); // "0123456789ab-dirty"
 * ```
 */
export function containersCommitText(custom: TargetCustom): string | undefined {
  const sha = custom["containers-sha"];
  if (sha === undefined) return undefined;
  return `${sha.slice(0, 12)}${custom.containersDirty === true ? "-dirty" : ""}`;
}

/** `<hwid>-<version>`: the target name convention. */
export const targetName = (hwid: string, version: string | number) => `${hwid}-${version}`;

/**
 * The version a target name carries by {@link targetName}'s convention, as {@link targetVersionNumber}
 * reads it; undefined for a name of another form.
 *
 * @example
 * ```ts
 * versionOfTargetName("x86_64-linux-42"); // 42
 * versionOfTargetName("preloaded"); // undefined
 * ```
 */
export const versionOfTargetName = (name: string): number | undefined => {
  const dash = name.lastIndexOf("-");
  return dash < 0 ? undefined : targetVersionNumber(name.slice(dash + 1));
};
