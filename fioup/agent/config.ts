/**
 * The agent's configuration: the `[mqtt]` table of fioup's merged TOML
 * config, overridden by command-line flags. Registry credentials and
 * insecure (plain HTTP) registries live here, as in the `registry_configurations`
 * and `insecure_registries` of Kanto's container-management config.
 *
 * ```toml
 * [mqtt]
 * url = "mqtts://broker:8883"            # tcp:// and tls:// (Kanto's) are read as mqtt:// and mqtts://
 * username = "device-42"                  # optional broker login
 * password = "s3cret"
 * client_cert = "/var/sota/client.pem"   # optional mTLS
 * client_key = "/var/sota/pkey.pem"
 * ca = "/var/sota/root.crt"
 * system_containers = "self-update-agent,databroker"
 * insecure_registries = ["127.0.0.1:5000"]
 * [mqtt.registries."registry.example.com"]
 * username = "robot"
 * password = "s3cret"
 * ```
 *
 * @module
 */
import { accessSync, constants, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fsWhy } from "../../lib/fs/why.ts";
import { Type, type Static } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { ConfigError, setIn, type Config } from "../config.ts";
import { UsageError } from "../../lib/cli/command.ts";
import { schemaProblem } from "../../lib/api/schema-problem.ts";
import { checkFlagValues, checkRegistryHosts } from "../../lib/cli/flag-values.ts";
import { CsvOrList } from "../../lib/device/sota-toml.ts";
import { commaList } from "../../lib/cli/comma-list.ts";
import { shownUrl } from "../../lib/net/shown-url.ts";
import { isRegistryHost, REGISTRY_HOST_RULE } from "../../lib/oci/reference.ts";
import { closest } from "../../lib/cli/suggest.ts";
import { whyNotPem } from "../../lib/x509/pem.ts";

/** The owner name put on the agent's containers, from `instance` in the config or `--instance`. */
const AgentInstance = Type.String({ pattern: "^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$", expected: "an instance name (letters, digits, . _ -; at most 64, starting with a letter or digit)" });

const RegistryToml = Type.Object(
  { username: Type.Optional(Type.String()), password: Type.Optional(Type.String()), ca: Type.Optional(Type.String()), insecure: Type.Optional(Type.Boolean()) },
  { additionalProperties: false },
);

export const MqttToml = Type.Object(
  {
    url: Type.Optional(Type.String()),
    client_id: Type.Optional(Type.String()),
    client_cert: Type.Optional(Type.String()),
    client_key: Type.Optional(Type.String()),
    ca: Type.Optional(Type.String()),
    username: Type.Optional(Type.String()),
    password: Type.Optional(Type.String()),
    system_containers: Type.Optional(CsvOrList),
    instance: Type.Optional(AgentInstance),
    state_dir: Type.Optional(Type.String()),
    command_flow: Type.Optional(Type.Boolean()),
    insecure_registries: Type.Optional(CsvOrList),
    registries: Type.Optional(Type.Record(Type.String(), RegistryToml)),
  },
  { additionalProperties: false },
);
export type MqttToml = Static<typeof MqttToml>;

export interface RegistryAccess {
  username?: string;
  password?: string;
  /** PEM of a private CA. */
  ca?: string;
  /** Plain HTTP (a registry on loopback or a lab network). */
  insecure?: boolean;
}

export interface AgentConfig {
  url: string;
  clientId: string;
  tls: { ca?: string; cert?: string; key?: string };
  username?: string;
  password?: string;
  /** Containers never touched (unless a desired state names its own list). */
  systemContainers: string[];
  /** The owner label value: an agent destroys only containers it created under this name. */
  instance: string;
  /** Where the activity in progress is persisted. */
  stateDir: string;
  /** The blob store (`pacman.reset_apps_root`). */
  storeRoot: string;
  dockerHost?: string;
  /** Desired states wait for DOWNLOAD/UPDATE/ACTIVATE/CLEANUP commands unless the message says otherwise. */
  commandFlow: boolean;
  registries: Record<string, RegistryAccess>;
}

export interface AgentFlags {
  mqtt?: string;
  "client-id"?: string;
  "client-cert"?: string;
  "client-key"?: string;
  ca?: string;
  "system-containers"?: string;
  instance?: string;
  "state-dir"?: string;
  "insecure-registry"?: string[];
  "command-flow"?: boolean;
}


/** A broker URL MQTT.js can connect to: one of its schemes and a host. */
const isBrokerUrl = (url: string): boolean => /^(mqtt|mqtts|tcp|tls|ws|wss):\/\/[^/?#]/.test(url) && URL.canParse(url);
const BROKER_URL_RULE = "expected an mqtt:// (or tcp://), mqtts:// (or tls://), ws:// or wss:// URL with a host";

/**
 * Kanto's configs name the broker `tcp://host:1883` (and `tls://` for TLS): MQTT.js reads them as
 * mqtt:// and mqtts://, except that with a client certificate it throws on any scheme but its
 * own, so they are turned into its own here.
 */
const brokerScheme = (url: string): string => url.replace(/^tcp:/, "mqtt:").replace(/^tls:/, "mqtts:");

/** An unknown key of the `[mqtt]` table or of a registry in it, said with the key most likely meant. */
function unknownKeyProblem(field: string, message: string): string | undefined {
  if (!message.startsWith("unexpected property")) return undefined;
  const inRegistry = /^registries\[/.test(field) || field.startsWith("registries.");
  const quoted = /\[("(?:[^"\\]|\\.)*")\]$/.exec(field);
  const key: string = quoted ? JSON.parse(quoted[1]!) : field.slice(field.lastIndexOf(".") + 1);
  const keys = Object.keys((inRegistry ? RegistryToml : MqttToml).properties);
  const meant = closest(key, keys);
  return `not a key fioup reads (${meant !== undefined ? `did you mean ${meant}?` : `known: ${keys.join(", ")}`})`;
}

/**
 * A PEM file of the agent's TLS: named by a flag it is bad usage (exit 2, the flag named), by the
 * config a config error; a file that holds no PEM is refused here, not as a TLS error at connect.
 */
const readPem = (path: string | undefined, what: string, flag?: string): string | undefined => {
  if (!path) return undefined;
  const fail = (why: string) => (flag ? new UsageError(`Cannot read ${flag} ${path}: ${why}`) : new ConfigError(`Cannot read the ${what} ${path}: ${why}`));
  let pem: string;
  try {
    pem = readFileSync(path, "utf8");
  } catch (err) {
    throw fail(fsWhy(err));
  }
  const why = whyNotPem(pem);
  if (why) throw fail(why);
  return pem;
};

/**
 * Why the agent could not keep its activity in `dir`, made when an activity is first saved (with
 * the folders above it): `dir` and the nearest folder above it that exists must be folders, and
 * that one writable. Undefined when it can. Found at the start, not half way through an apply.
 */
function whyNoStateDir(dir: string): string | undefined {
  for (let p = dir; ; p = dirname(p)) {
    let isDir: boolean;
    try {
      isDir = statSync(p).isDirectory();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code === "ENOENT" || code === "ENOTDIR") && p !== dirname(p)) continue;
      return fsWhy(err);
    }
    if (!isDir) return p === dir ? "it is a file, give a folder" : `${p} is a file, not a folder`;
    try {
      accessSync(p, constants.W_OK | constants.X_OK);
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === "EROFS" ? `the file system of ${p} is read-only` : `the folder ${p} is not writable`;
    }
    return undefined;
  }
}

/**
 * The agent's own flag values checked, before the config is read, the container engine asked or
 * the broker dialled: a value typed wrong is bad usage (exit 2) naming the flag, not a Docker,
 * broker or config error said first (or a --state-dir failing at the first apply).
 * The TLS file flags are read, and so checked, by agentConfig, before the engine too.
 *
 * @throws {UsageError} A --mqtt, --instance, --insecure-registry or --state-dir that cannot be right.
 */
export function checkAgentFlags(flags: AgentFlags): void {
  if (flags.mqtt !== undefined && !isBrokerUrl(flags.mqtt)) throw new UsageError(`--mqtt: ${BROKER_URL_RULE}, got "${shownUrl(flags.mqtt)}"`);
  if (flags.instance !== undefined) checkFlagValues("--instance", AgentInstance, [flags.instance]);
  checkRegistryHosts("--insecure-registry", commaList(flags["insecure-registry"]));
  const stateDir = flags["state-dir"];
  const why = stateDir === undefined ? undefined : whyNoStateDir(stateDir);
  if (why) throw new UsageError(`--state-dir ${stateDir}: ${why}`);
}

/** True when the merged config has an `[mqtt]` table with a url (the daemon then runs the agent too). */
export function hasMqttConfig(cfg: Config): boolean {
  const t = cfg.raw.mqtt;
  return typeof t === "object" && t !== null && !Array.isArray(t) && typeof (t as { url?: unknown }).url === "string";
}

/**
 * Builds the agent config from fioup's config and the command's flags (flags win).
 * @throws {UsageError} A flag checkAgentFlags refuses, or a --ca/--client-cert/--client-key that cannot be read.
 * @throws {ConfigError} A wrong `[mqtt]` value, no broker URL, or an unreadable certificate file.
 */
export function agentConfig(cfg: Config, flags: AgentFlags = {}): AgentConfig {
  // A flag the user just typed wrong is bad usage (exit 2), named, before the table's values (the config's, exit 20).
  checkAgentFlags(flags);
  const raw = cfg.raw.mqtt ?? {};
  if (!Value.Check(MqttToml, raw)) {
    const p = schemaProblem(MqttToml, raw);
    const key = `mqtt${p?.field ? (p.field.startsWith("[") ? p.field : `.${p.field}`) : ""}`;
    // An unknown key stays an error (unlike [fioup]'s warning): a misspelt password or ca would
    // otherwise connect without it, and no other tool's config shares this table.
    const why = p ? (unknownKeyProblem(p.field, p.message) ?? p.message) : "wrong type";
    throw new ConfigError(`Invalid config at ${key}: ${why}${setIn(cfg, key)}`);
  }
  const t = raw as MqttToml;
  const url = flags.mqtt ?? t.url;
  if (!url) throw new ConfigError("No MQTT broker: pass --mqtt URL or set url in the [mqtt] config table");
  if (!isBrokerUrl(url)) throw new ConfigError(`Invalid MQTT URL "${shownUrl(url)}" at mqtt.url: ${BROKER_URL_RULE}${setIn(cfg, "mqtt.url")}`);
  const registries: Record<string, RegistryAccess> = {};
  for (const [host, r] of Object.entries(t.registries ?? {})) {
    registries[host] = { ...r, ca: readPem(r.ca, `CA of registry ${host}`) };
  }
  const fromFlag = commaList(flags["insecure-registry"]);
  const fromTable = commaList(t.insecure_registries);
  const badInTable = fromTable.find((h) => !isRegistryHost(h));
  if (badInTable !== undefined) throw new ConfigError(`Invalid config at mqtt.insecure_registries: ${REGISTRY_HOST_RULE}, got "${badInTable}"${setIn(cfg, "mqtt.insecure_registries")}`);
  for (const host of [...fromTable, ...fromFlag]) registries[host] = { ...registries[host], insecure: true };
  // The table's instance was checked with MqttToml above, the flag's by checkAgentFlags.
  const instance = flags.instance ?? t.instance ?? "default";
  // As --state-dir: found at the start, not at the first apply's save.
  const badStateDir = flags["state-dir"] === undefined && t.state_dir !== undefined ? whyNoStateDir(t.state_dir) : undefined;
  if (badStateDir) throw new ConfigError(`Invalid config at mqtt.state_dir: ${t.state_dir}: ${badStateDir}${setIn(cfg, "mqtt.state_dir")}`);
  return {
    url: brokerScheme(url),
    clientId: flags["client-id"] ?? t.client_id ?? `fioup-agent-${instance}-${Math.random().toString(36).slice(2, 8)}`,
    tls: {
      ca: readPem(flags.ca ?? t.ca, "broker CA", flags.ca === undefined ? undefined : "--ca"),
      cert: readPem(flags["client-cert"] ?? t.client_cert, "client certificate", flags["client-cert"] === undefined ? undefined : "--client-cert"),
      key: readPem(flags["client-key"] ?? t.client_key, "client key", flags["client-key"] === undefined ? undefined : "--client-key"),
    },
    username: t.username,
    password: t.password,
    systemContainers: commaList(flags["system-containers"] ?? t.system_containers),
    instance,
    stateDir: flags["state-dir"] ?? t.state_dir ?? join(cfg.storagePath, "agent"),
    storeRoot: cfg.resetAppsRoot,
    dockerHost: cfg.dockerHost ? `unix://${cfg.dockerHost}` : undefined,
    commandFlow: flags["command-flow"] || t.command_flow === true,
    registries,
  };
}
