/**
 * The device's configuration (SPEC §4): sota.toml merged with the drop-in
 * directories `/usr/lib/sota/conf.d/*.toml` then `/etc/sota/conf.d/*.toml`
 * (later files win, table by table). Every absolute default is under
 * `FIOUP_ROOT` (empty in production), so tests run a whole device in a temp dir.
 *
 * @module
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { Type, type Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { DEFAULT_DEVICE_PATHS, LOCAL_CONF_DIR, SYSTEM_CONF_DIR, underRoot } from "../lib/device/paths.ts";
import { parseToml, type TomlTable, type TomlValue } from "./toml.ts";

/** The raw sota.toml shape fioup reads (unknown keys are kept and ignored). */
const CsvOrList = Type.Union([Type.String(), Type.Array(Type.String())]);
const IntLike = Type.Union([Type.Integer(), Type.String({ pattern: "^[0-9]+$" })]);
export const SotaToml = Type.Object(
  {
    tls: Type.Optional(Type.Object({ server: Type.Optional(Type.String()) }, { additionalProperties: true })),
    import: Type.Optional(
      Type.Object(
        {
          base_path: Type.Optional(Type.String()),
          tls_cacert_path: Type.Optional(Type.String()),
          tls_clientcert_path: Type.Optional(Type.String()),
          tls_pkey_path: Type.Optional(Type.String()),
        },
        { additionalProperties: true },
      ),
    ),
    provision: Type.Optional(
      Type.Object({ primary_ecu_hardware_id: Type.Optional(Type.String()) }, { additionalProperties: true }),
    ),
    pacman: Type.Optional(
      Type.Object(
        {
          tags: Type.Optional(CsvOrList),
          compose_apps: Type.Optional(CsvOrList),
          compose_apps_root: Type.Optional(Type.String()),
          reset_apps_root: Type.Optional(Type.String()),
          storage_watermark: Type.Optional(IntLike),
        },
        { additionalProperties: true },
      ),
    ),
    uptane: Type.Optional(Type.Object({ polling_seconds: Type.Optional(IntLike) }, { additionalProperties: true })),
    storage: Type.Optional(Type.Object({ path: Type.Optional(Type.String()) }, { additionalProperties: true })),
    fioup: Type.Optional(
      Type.Object({ docker_host: Type.Optional(Type.String()) }, { additionalProperties: true }),
    ),
  },
  { additionalProperties: true },
);
export type SotaToml = Static<typeof SotaToml>;

/** The merged config with defaults applied and paths resolved. */
export interface Config {
  /** Gateway base URL, e.g. https://gw:8443; undefined before registration. */
  server?: string;
  caPath: string;
  certPath: string;
  keyPath: string;
  hardwareId?: string;
  tags: string[];
  /** Apps to run; undefined = every app of the target. */
  shortlist?: string[];
  composeAppsRoot: string;
  resetAppsRoot: string;
  storageWatermark: number;
  pollingSeconds: number;
  storagePath: string;
  /** The prefix for system paths (FIOUP_ROOT; "" on a device). */
  root: string;
  /** Docker socket (unix path) from fioup.docker_host or DOCKER_HOST. */
  dockerHost?: string;
  /** Files merged, in order. */
  sources: string[];
  /** The merged raw TOML, for PUT /system_info/config. */
  raw: TomlTable;
}

export class ConfigError extends Error {
  override name = "ConfigError";
}

export interface ConfigLocation {
  /** FIOUP_ROOT: prefix for /var/sota, /etc/sota, /usr/lib/sota, /var/lmp. */
  root?: string;
  /** Directory holding sota.toml (default `<root>/var/sota`). */
  sotaDir?: string;
}

/** Resolves where config lives from flags and the environment. */
export function configLocation(flags: { "sota-dir"?: string }): Required<ConfigLocation> {
  const root = process.env.FIOUP_ROOT ?? "";
  const sotaDir = flags["sota-dir"] ?? process.env.FIOUP_SOTA_DIR ?? underRoot(root, DEFAULT_DEVICE_PATHS.storagePath);
  return { root, sotaDir };
}

/** Deep-merges `b` over `a`: tables merge key by key, anything else is replaced. */
export function mergeToml(a: TomlTable, b: TomlTable): TomlTable {
  const out: TomlTable = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = isTable(prev) && isTable(v) ? mergeToml(prev, v) : v;
  }
  return out;
}

function isTable(v: TomlValue | undefined): v is TomlTable {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function tomlFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".toml"))
    .sort()
    .map((f) => join(dir, f));
}

function readToml(path: string): TomlTable {
  try {
    return parseToml(readFileSync(path, "utf8"));
  } catch (cause) {
    throw new ConfigError(`Cannot read config ${path}: ${(cause as Error).message}`, { cause });
  }
}

const csv = (v: string | string[] | undefined): string[] | undefined =>
  v === undefined
    ? undefined
    : (Array.isArray(v) ? v : v.split(","))
        .map((s) => s.trim())
        .filter((s) => s !== "");

/**
 * Loads and merges the config files: `<sotaDir>/sota.toml`, then
 * `<root>/usr/lib/sota/conf.d/*.toml`, then `<root>/etc/sota/conf.d/*.toml`.
 *
 * @throws {ConfigError} If a file is not valid TOML or a value has the wrong type.
 */
export function loadConfig(loc: ConfigLocation = {}): Config {
  const root = loc.root ?? process.env.FIOUP_ROOT ?? "";
  const sotaDir = loc.sotaDir ?? underRoot(root, DEFAULT_DEVICE_PATHS.storagePath);
  const files = [
    join(sotaDir, "sota.toml"),
    ...tomlFiles(underRoot(root, SYSTEM_CONF_DIR)),
    ...tomlFiles(underRoot(root, LOCAL_CONF_DIR)),
  ].filter((f) => existsSync(f));
  let raw: TomlTable = {};
  for (const f of files) raw = mergeToml(raw, readToml(f));
  return resolveConfig(raw, { root, sotaDir, sources: files });
}

/** Applies defaults and resolves paths of an already merged TOML table. */
export function resolveConfig(raw: TomlTable, opts: { root: string; sotaDir: string; sources?: string[] }): Config {
  if (!Value.Check(SotaToml, raw)) {
    const first = [...Value.Errors(SotaToml, raw)][0];
    throw new ConfigError(`Invalid config at ${first?.path || "/"}: ${first?.message ?? "wrong type"}`);
  }
  const t = raw as SotaToml;
  const storagePath = t.storage?.path ? rooted(opts.root, t.storage.path) : opts.sotaDir;
  const base = t.import?.base_path ? rooted(opts.root, t.import.base_path) : storagePath;
  const inBase = (p: string | undefined, def: string) => (p ? (isAbsolute(p) ? rooted(opts.root, p) : join(base, p)) : join(base, def));
  const watermark = Number(t.pacman?.storage_watermark ?? 95);
  if (!(watermark >= 1 && watermark <= 100)) throw new ConfigError(`Invalid config at /pacman/storage_watermark: ${watermark} is not 1..100`);
  const polling = Number(t.uptane?.polling_seconds ?? 300);
  if (!(polling >= 1)) throw new ConfigError(`Invalid config at /uptane/polling_seconds: must be at least 1`);
  const dockerHost = t.fioup?.docker_host ?? process.env.DOCKER_HOST;
  return {
    server: t.tls?.server?.replace(/\/+$/, ""),
    caPath: inBase(t.import?.tls_cacert_path, "root.crt"),
    certPath: inBase(t.import?.tls_clientcert_path, "client.pem"),
    keyPath: inBase(t.import?.tls_pkey_path, "pkey.pem"),
    hardwareId: t.provision?.primary_ecu_hardware_id,
    tags: csv(t.pacman?.tags) ?? [],
    shortlist: csv(t.pacman?.compose_apps),
    composeAppsRoot: t.pacman?.compose_apps_root ? rooted(opts.root, t.pacman.compose_apps_root) : underRoot(opts.root, DEFAULT_DEVICE_PATHS.composeAppsRoot),
    resetAppsRoot: t.pacman?.reset_apps_root ? rooted(opts.root, t.pacman.reset_apps_root) : underRoot(opts.root, DEFAULT_DEVICE_PATHS.resetAppsRoot),
    storageWatermark: watermark,
    pollingSeconds: polling,
    storagePath,
    root: opts.root,
    dockerHost: dockerHost?.replace(/^unix:\/\//, ""),
    sources: opts.sources ?? [],
    raw,
  };
}

/** Absolute config paths are system paths: put them under FIOUP_ROOT unless already there. */
function rooted(root: string, p: string): string {
  if (!root || !isAbsolute(p) || p === root || p.startsWith(root.replace(/\/$/, "") + "/")) return p;
  return join(root, p);
}
