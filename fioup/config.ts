/**
 * The device's configuration: the image's drop-ins `/usr/lib/sota/conf.d/*.toml`,
 * then sota.toml, then the owner's drop-ins `/etc/sota/conf.d/*.toml` (later
 * files win, key by key; see loadConfig). Paths in config files are device
 * paths: every one is put under `FIOUP_ROOT` (empty in production), so tests
 * run a whole device in a temp dir and a device directory can be moved.
 *
 * @module
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { UsageError } from "../lib/cli/command.ts";
import { fsWhy } from "../lib/fs/why.ts";
import { DEFAULT_DEVICE_PATHS, devicePath, hostPath, LOCAL_CONF_DIR, SYSTEM_CONF_DIR, underRoot } from "../lib/device/paths.ts";
import { checkTimeZone, parseWindow } from "../lib/schedule/index.ts";
import { checkSotaToml, MAX_POLLING_SECONDS, mergeToml, parseSotaToml, sotaTomlWarnings, TomlError, withFioupNames, type SotaToml, type TomlTable } from "../lib/device/sota-toml.ts";
import { MAX_EXPIRY_GRACE_SECONDS } from "../lib/tuf/expiry-grace.ts";
import { AppName, HardwareId, Tag } from "../lib/api/target.ts";
import { fieldPath, firstValueProblem } from "../lib/api/schema-problem.ts";
import { commaList, tagList } from "../lib/cli/comma-list.ts";

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
  /** fioup.download_stall_seconds: a blob download that receives nothing this long is resumed (default 15). */
  downloadStallSeconds?: number;
  /** fioup.install_window: install only inside this maintenance window (lib/schedule syntax); a rollout's window wins. */
  installWindow?: string;
  /** fioup.time_zone: the zone of a window that names none (default: the system's). */
  timeZone?: string;
  /** fioup.max_hold_seconds: how long update locks may defer an update (default 86400); a rollout's maxHold wins. */
  maxHoldSeconds: number;
  /**
   * fioup.offline_expiry_grace_seconds: how long past its expiry TUF metadata from an offline
   * bundle is still accepted, for devices without a trusted clock (default 0, at most 30 days;
   * docs/offline.md). Never applies to updates from the gateway.
   */
  offlineExpiryGraceSeconds: number;
  /** Files merged, in order. */
  sources: string[];
  /** The device's own sota.toml (`<sotaDir>/sota.toml`), the file registration and the gateway's tags write. */
  sotaToml: string;
  /**
   * The last file that set each key or table (`fioup.max_hold_seconds`, `mqtt.registries["r.io"]`),
   * so a bad value is reported with the file to fix among several drop-in directories.
   */
  origins: Record<string, string>;
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

/**
 * The longest stall of a blob download before it is resumed (an hour): past setTimeout's 24.8 days
 * the watchdog fires at once, every download would be "stalled" and a fetch would never finish.
 */
export const MAX_DOWNLOAD_STALL_SECONDS = 3600;
/**
 * The longest update locks may hold an update (a year): the hold's deadline becomes a date in
 * status and events, and past about 273,000 years there is no such date to write.
 */
export const MAX_HOLD_SECONDS = 365 * 86_400;

/**
 * Resolves where config lives from flags and the environment. `--sota-dir` is a host path; with
 * FIOUP_ROOT it must lie under the root, since the config stores device paths (relative to the
 * root): one outside it would be read back as a path under the root, a directory that is not there.
 *
 * @throws {UsageError} If the sota dir is outside FIOUP_ROOT.
 */
export function configLocation(flags: { "sota-dir"?: string }): Required<ConfigLocation> {
  const root = process.env.FIOUP_ROOT ?? "";
  const given = flags["sota-dir"] ?? process.env.FIOUP_SOTA_DIR;
  const named = flags["sota-dir"] !== undefined ? "--sota-dir" : "FIOUP_SOTA_DIR";
  // An empty value would resolve to the current directory, and a command would write there.
  if (given === "") throw new UsageError(`${named} is empty: give the directory holding sota.toml (e.g. ${underRoot(root, DEFAULT_DEVICE_PATHS.storagePath)})`);
  if (given !== undefined && existsSync(given) && !statSync(given).isDirectory())
    throw new UsageError(`${named} ${given} is not a directory: give the directory holding sota.toml, not a file`);
  const sotaDir = given !== undefined ? resolve(given) : underRoot(root, DEFAULT_DEVICE_PATHS.storagePath);
  if (root && given !== undefined && devicePath(resolve(root), sotaDir) === sotaDir)
    throw new UsageError(
      `${named} ${given} is outside FIOUP_ROOT ${root}: give a directory under it (e.g. ${underRoot(root, DEFAULT_DEVICE_PATHS.storagePath)})`,
    );
  return { root, sotaDir };
}

function tomlFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".toml"))
    .sort()
    .map((f) => join(dir, f));
}

function readToml(path: string): TomlTable {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (cause) {
    // In words (fsWhy), not the errno text ("EISDIR: illegal operation on a directory, read").
    throw new ConfigError(`Cannot read config ${path}: ${fsWhy(cause)}`, { cause });
  }
  try {
    return parseSotaToml(text, path);
  } catch (cause) {
    if (cause instanceof TomlError) throw new ConfigError(cause.message, { cause });
    throw cause;
  }
}

/**
 * The hardware id, tags and app shortlist checked against the rule targets follow (the gateway's):
 * a hand-edited tag such as "eu/west" matches no target ever, so a device following it would wait
 * for an update that cannot come, and say nothing. Checked by the commands that choose targets
 * (check, update, daemon, an offline bundle's run), not by loadConfig: early start, status and
 * update locks do not depend on them, and a device must still start its apps at boot.
 *
 * @throws {ConfigError} Naming the key, the rule and the value.
 */
export function checkTargetNames(cfg: Config): void {
  const keys = [
    ["pacman.tags", Tag, cfg.tags],
    ["pacman.compose_apps", AppName, cfg.shortlist ?? []],
    ["provision.primary_ecu_hardware_id", HardwareId, cfg.hardwareId === undefined ? [] : [cfg.hardwareId]],
  ] as const;
  for (const [key, schema, values] of keys) {
    const problem = firstValueProblem(schema, values);
    if (problem) throw new ConfigError(`Invalid config: ${key}: ${problem}${setIn(cfg, key)}`);
  }
}

/**
 * " (set in FILE)": the last file that set `key` (or the table holding it), for a message about
 * its value; "" for a default or a config not read from files.
 *
 * @example
 * ```ts
 * setIn(cfg, "fioup.max_hold_seconds"); // " (set in /etc/sota/conf.d/60-x.toml)"
 * ```
 */
export function setIn(cfg: Pick<Config, "origins">, key: string): string {
  let best: string | undefined;
  for (const k of Object.keys(cfg.origins))
    if ((key === k || key.startsWith(`${k}.`) || key.startsWith(`${k}[`)) && (best === undefined || k.length > best.length)) best = k;
  return best === undefined ? "" : ` (set in ${cfg.origins[best]})`;
}

/** Records `file` as where each key and table of `t` was set, in {@link fieldPath}'s form. */
function recordOrigins(origins: Record<string, string>, t: TomlTable, file: string, pointer = ""): void {
  for (const [k, v] of Object.entries(t)) {
    const p = `${pointer}/${k.replaceAll("~", "~0").replaceAll("/", "~1")}`;
    origins[fieldPath(p)] = file;
    if (typeof v === "object" && v !== null && !Array.isArray(v)) recordOrigins(origins, v, file, p);
  }
}

const csv = (v: string | string[] | undefined): string[] | undefined => (v === undefined ? undefined : commaList(v));

/**
 * Loads and merges the config files, later ones winning key by key:
 * `<root>/usr/lib/sota/conf.d/*.toml` (defaults shipped with the image, such as
 * preload's 50-preload.toml), then `<sotaDir>/sota.toml` (what registration
 * decided: `fioup register --apps` beats the image's app list), then
 * `<root>/etc/sota/conf.d/*.toml` (the device owner's overrides).
 *
 * A key fioup would ignore though likely meant for it (sotaTomlWarnings) is a warning through
 * `warn` (default: a line on stderr, so `--format json` output stays clean), once per load.
 *
 * @throws {ConfigError} If a file is not valid TOML or a value has the wrong type.
 */
export function loadConfig(loc: ConfigLocation = {}, warn: (line: string) => void = stderrWarning): Config {
  const root = loc.root ?? process.env.FIOUP_ROOT ?? "";
  const sotaDir = loc.sotaDir ?? underRoot(root, DEFAULT_DEVICE_PATHS.storagePath);
  const files = [
    ...tomlFiles(underRoot(root, SYSTEM_CONF_DIR)),
    join(sotaDir, "sota.toml"),
    ...tomlFiles(underRoot(root, LOCAL_CONF_DIR)),
  ].filter((f) => existsSync(f));
  let raw: TomlTable = {};
  const origins: Record<string, string> = {};
  for (const f of files) {
    const t = withFioupNames(readToml(f));
    for (const w of sotaTomlWarnings(t, f)) warn(w);
    raw = mergeToml(raw, t);
    recordOrigins(origins, t, f);
  }
  return resolveConfig(raw, { root, sotaDir, sources: files, origins, warn });
}

/** A config warning as fioup prints it: a line on stderr, so `--format json` output stays clean. */
const stderrWarning = (line: string) => void process.stderr.write(`warning: ${line}\n`);

/**
 * Applies defaults and resolves paths of an already merged TOML table. A number of seconds past
 * its longest (polling, download stall, hold) is used as that longest, with a warning through
 * `opts.warn`, not refused: fioup up to 2026-12-02 took any value there, and a refusal stops every
 * fioup command, the daemon with them, so a device whose files hold one would stop updating and
 * nothing could change its files over the air. A value below the least, or not a number, is
 * refused as it always was.
 */
export function resolveConfig(
  raw: TomlTable,
  opts: { root: string; sotaDir: string; sources?: string[]; origins?: Record<string, string>; warn?: (line: string) => void },
): Config {
  try {
    checkSotaToml(raw, opts.sources?.length ? opts.sources.join(" + ") : "the merged config");
  } catch (cause) {
    throw new ConfigError((cause as Error).message, { cause });
  }
  const t: SotaToml = raw;
  const storagePath = t.storage?.path ? hostPath(opts.root, t.storage.path) : opts.sotaDir;
  const base = t.import?.base_path ? hostPath(opts.root, t.import.base_path) : storagePath;
  const inBase = (p: string | undefined, def: string) => (p ? (isAbsolute(p) ? hostPath(opts.root, p) : join(base, p)) : join(base, def));
  const origins = opts.origins ?? {};
  const invalid = (key: string, why: string) => new ConfigError(`Invalid config: ${key}: ${why}${setIn({ origins }, key)}`);
  const atMost = (key: string, value: number, most: number, span: string, use: string) => {
    if (!(value > most)) return value;
    (opts.warn ?? stderrWarning)(`${key}: ${value} is more than ${most} (${span}), the most fioup takes: it ${use} ${most} s${setIn({ origins }, key)}; lower it there to silence this`);
    return most;
  };
  const watermark = Number(t.pacman?.storage_watermark ?? 95);
  if (!(watermark >= 1 && watermark <= 100)) throw invalid("pacman.storage_watermark", `${watermark} is not 1..100`);
  const setPolling = Number(t.uptane?.polling_seconds ?? 300);
  if (!(setPolling >= 1)) throw invalid("uptane.polling_seconds", `must be 1..${MAX_POLLING_SECONDS} (a week), got ${setPolling}`);
  const polling = atMost("uptane.polling_seconds", setPolling, MAX_POLLING_SECONDS, "a week", "polls every");
  const dockerHost = t.fioup?.docker_host ?? process.env.DOCKER_HOST;
  // fioup talks to the engine over its unix socket alone: a tcp:// or ssh:// host would be taken
  // for a socket path and fail as "no such socket", which sends the user looking for a file.
  if (dockerHost && !dockerHost.startsWith("unix://") && !dockerHost.startsWith("/"))
    throw invalid(t.fioup?.docker_host !== undefined ? "fioup.docker_host" : "DOCKER_HOST (environment)", `${dockerHost}: only unix:// sockets are supported (unix:///var/run/docker.sock)`);
  const setStall = t.fioup?.download_stall_seconds === undefined ? undefined : Number(t.fioup.download_stall_seconds);
  if (setStall !== undefined && !(setStall >= 1))
    throw invalid("fioup.download_stall_seconds", `must be 1..${MAX_DOWNLOAD_STALL_SECONDS} (an hour), got ${setStall}`);
  const stall = setStall === undefined ? undefined : atMost("fioup.download_stall_seconds", setStall, MAX_DOWNLOAD_STALL_SECONDS, "an hour", "resumes a stalled download after");
  const window = t.fioup?.install_window?.trim() || undefined;
  if (window !== undefined) {
    try {
      parseWindow(window);
    } catch (e) {
      throw invalid("fioup.install_window", (e as Error).message);
    }
  }
  let timeZone = t.fioup?.time_zone?.trim() || undefined;
  if (timeZone !== undefined) {
    try {
      timeZone = checkTimeZone(timeZone);
    } catch (e) {
      throw invalid("fioup.time_zone", (e as Error).message);
    }
  }
  const setHold = Number(t.fioup?.max_hold_seconds ?? 86400);
  if (!(setHold >= 0)) throw invalid("fioup.max_hold_seconds", `must be 0..${MAX_HOLD_SECONDS} (a year), got ${setHold}`);
  const maxHold = atMost("fioup.max_hold_seconds", setHold, MAX_HOLD_SECONDS, "a year", "lets update locks hold an update for at most");
  const grace = Number(t.fioup?.offline_expiry_grace_seconds ?? 0);
  if (!(Number.isInteger(grace) && grace >= 0 && grace <= MAX_EXPIRY_GRACE_SECONDS))
    throw invalid("fioup.offline_expiry_grace_seconds", `must be 0..${MAX_EXPIRY_GRACE_SECONDS} (30 days), got ${grace}`);
  // Checked here: "notaurl" ended as a bare "Invalid URL" (exit 1) at the first request.
  const server = t.tls?.server?.replace(/\/+$/, "");
  const serverUrl = server ? URL.parse(server) : undefined;
  if (server && (!serverUrl || !/^https?:$/.test(serverUrl.protocol) || !serverUrl.host)) throw invalid("tls.server", `expected the gateway's https:// URL, got "${server}"`);
  return {
    server,
    caPath: inBase(t.import?.tls_cacert_path, "root.crt"),
    certPath: inBase(t.import?.tls_clientcert_path, "client.pem"),
    keyPath: inBase(t.import?.tls_pkey_path, "pkey.pem"),
    hardwareId: t.provision?.primary_ecu_hardware_id,
    tags: tagList(t.pacman?.tags),
    shortlist: csv(t.pacman?.compose_apps),
    composeAppsRoot: t.pacman?.compose_apps_root ? hostPath(opts.root, t.pacman.compose_apps_root) : underRoot(opts.root, DEFAULT_DEVICE_PATHS.composeAppsRoot),
    resetAppsRoot: t.pacman?.reset_apps_root ? hostPath(opts.root, t.pacman.reset_apps_root) : underRoot(opts.root, DEFAULT_DEVICE_PATHS.resetAppsRoot),
    storageWatermark: watermark,
    pollingSeconds: polling,
    storagePath,
    sotaToml: join(opts.sotaDir, "sota.toml"),
    root: opts.root,
    dockerHost: dockerHost?.replace(/^unix:\/\//, ""),
    ...(stall !== undefined ? { downloadStallSeconds: stall } : {}),
    ...(window !== undefined ? { installWindow: window } : {}),
    ...(timeZone !== undefined ? { timeZone } : {}),
    maxHoldSeconds: maxHold,
    offlineExpiryGraceSeconds: grace,
    sources: opts.sources ?? [],
    origins,
    raw,
  };
}


