/**
 * The compose-app format in the registry, in one place so the
 * publisher (`gateway publish`) and the device (fioup, preload) agree on every
 * media type, annotation name and size limit. Shaped like Foundries.io's
 * composeapp so tooling that knows it can read ours.
 *
 * @module
 */

/** The app manifest is a plain OCI image manifest... */
export const APP_MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json";
/** ...whose artifactType marks it as a compose app. */
export const APP_ARTIFACT_TYPE = "application/vnd.fio+compose-app";
/** The single layer: the bundle tgz. */
export const APP_LAYER_MEDIA_TYPE = "application/octet-stream";

/** The OCI empty config `{}`: media type, digest and size. */
export const EMPTY_CONFIG_MEDIA_TYPE = "application/vnd.oci.empty.v1+json";
export const EMPTY_CONFIG_BYTES = new TextEncoder().encode("{}");
export const EMPTY_CONFIG_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
export const EMPTY_CONFIG_DESCRIPTOR = {
  mediaType: EMPTY_CONFIG_MEDIA_TYPE,
  digest: EMPTY_CONFIG_DIGEST,
  size: 2,
} as const;

/** Layer annotations pointing at the bundle index blob (same repository). */
export const BUNDLE_INDEX_DIGEST_ANNOTATION = "org.foundries.app.bundle.index.digest";
export const BUNDLE_INDEX_SIZE_ANNOTATION = "org.foundries.app.bundle.index.size";
/** Manifest annotation: `{"compose-app": "v1"}`. */
export const COMPOSE_APP_ANNOTATION = "compose-app";
export const COMPOSE_APP_VERSION = "v1";

/** Compose file names an app directory may hold, in order of preference. */
export const COMPOSE_FILE_NAMES = ["docker-compose.yml", "compose.yml", "compose.yaml"] as const;
/** The dockerignore-style file listing what the bundle leaves out; never shipped itself. */
export const IGNORE_FILE_NAME = ".composeappignores";

/** Limits (composeapp's): compose file ≤ 1 MiB, bundle ≤ 1 GiB, app manifest < 50 KiB. */
export const MAX_COMPOSE_FILE_BYTES = 1024 * 1024;
export const MAX_BUNDLE_BYTES = 1024 * 1024 * 1024;
/** Largest file a device extracts from a bundle (extract.ts): a bundle holding a larger one is refused when it is made, not on every device. */
export const MAX_BUNDLE_FILE_BYTES = 256 * 1024 * 1024;
export const MAX_APP_MANIFEST_BYTES = 50 * 1024 - 1;
/** The bundle index is JSON listing every file: bounded like a manifest, but larger. */
export const MAX_BUNDLE_INDEX_BYTES = 4 * 1024 * 1024;

/** A compose-app manifest as it is stored in the registry. */
export interface AppManifest {
  schemaVersion: 2;
  mediaType: typeof APP_MANIFEST_MEDIA_TYPE;
  artifactType: typeof APP_ARTIFACT_TYPE;
  config: { mediaType: string; digest: string; size: number };
  layers: [
    {
      mediaType: string;
      digest: string;
      size: number;
      annotations: Record<string, string>;
    },
  ];
  annotations: Record<string, string>;
}

/** The bundle index blob: path in the bundle → `sha256:<hex>` of the file. */
export type BundleIndex = Record<string, string>;

/**
 * Bundle tar conventions (what `createBundle` writes and extraction checks):
 * entry names are relative POSIX paths without a `./` prefix; directories come
 * as directory entries named with a trailing `/` (mode 0755), parents first; files as regular files (0644, or 0755 when
 * executable); no links, no devices; sorted by name; mtime 0, uid/gid 0, no
 * owner names. The bundle index lists every regular file, keyed by the same
 * name, and nothing else.
 */
export const BUNDLE_FILE_MODE = 0o644;
export const BUNDLE_EXEC_MODE = 0o755;
export const BUNDLE_DIR_MODE = 0o755;

/**
 * The compose project name a device runs an app under (fioup, preload's early start). v1 and v2
 * both normalise names (lowercase; v1 also drops `.`), so the normalised form is passed
 * explicitly and container labels (`com.docker.compose.project`) come out predictable. Publish
 * refuses two apps whose names give the same one: they would share a project on the device and
 * remove each other's containers as orphans.
 */
export function projectName(app: string): string {
  return app.toLowerCase().replace(/[^a-z0-9_-]/g, "");
}
