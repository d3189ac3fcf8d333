/**
 * A desired-state component (`{id, version, config: [{key, value}...]}`) read
 * into a {@link ContainerSpec}: every config key Kanto's container update
 * agent knows, checked and normalised, with Kanto's defaults. A value that
 * cannot be used is an {@link InvalidComponentError} naming the component, the
 * key and the reason; Kanto silently drops a bad port or mount instead.
 *
 * Keys that may repeat (one entry each): env, cmd, port, device, mount, host.
 * Every other key may appear once.
 *
 * @module
 */
import { isIP } from "node:net";
import { parseSize } from "../../lib/cli/size.ts";
import { tryParseReference } from "../../lib/oci/reference.ts";
import type { Component } from "./messages.ts";

export type RestartPolicy = "no" | "always" | "unless-stopped" | "on-failure";
export const RESTART_POLICIES: readonly RestartPolicy[] = ["no", "always", "unless-stopped", "on-failure"];

export interface PortSpec {
  hostIp: string;
  /** "8080" or a range "8080-8090" (the engine picks one free port of it). */
  hostPort: string;
  containerPort: number;
  proto: "tcp" | "udp" | "sctp";
}

export interface DeviceSpec {
  host: string;
  container: string;
  /** cgroup permissions, e.g. "rwm". */
  permissions: string;
}

export interface MountSpec {
  source: string;
  destination: string;
  propagation: "rprivate" | "private" | "rshared" | "shared" | "rslave" | "slave";
}

/** What the agent runs for one component. */
export interface ContainerSpec {
  name: string;
  version: string;
  image: string;
  env: string[];
  cmd: string[];
  ports: PortSpec[];
  devices: DeviceSpec[];
  mounts: MountSpec[];
  network: "bridge" | "host";
  /** Extra /etc/hosts entries, `name:ip` (`host_ip` becomes the engine's host-gateway). */
  hosts: string[];
  privileged: boolean;
  restart: { policy: RestartPolicy; maxRetries: number; timeout: number };
  log: { driver: string; maxFiles: number; maxSize: string };
  memory: { limit: number; swap: number; reservation: number };
}

/** A component config entry that cannot be used: says which component, which key and why. */
export class InvalidComponentError extends Error {
  override name = "InvalidComponentError";
}

const REPEATABLE = new Set(["env", "cmd", "port", "device", "mount", "host"]);
const SINGLE = new Set([
  "image", "network", "privileged", "restartPolicy", "restartMaxRetries", "restartTimeout",
  "logDriver", "logMaxFiles", "logMaxSize", "memory", "memorySwap", "memoryReservation",
]);
export const COMPONENT_KEYS: readonly string[] = [...SINGLE, ...REPEATABLE];

const LOG_DRIVERS = new Set(["json-file", "local", "none", "journald", "syslog"]);
const PROPAGATIONS = new Set<MountSpec["propagation"]>(["rprivate", "private", "rshared", "shared", "rslave", "slave"]);

const portNumber = (s: string): number | undefined => {
  if (!/^\d{1,5}$/.test(s)) return undefined;
  const n = Number(s);
  return n >= 1 && n <= 65535 ? n : undefined;
};

/**
 * Parses `[hostIP:]hostPort[-hostPortEnd]:containerPort[/proto]`, hostIP an IPv4 address or an
 * IPv6 one in brackets (`[::1]:8080:80`). The host IP is checked here because the engine
 * publishes a port whose host IP it cannot read on every interface: a mistyped loopback-only
 * port would be public.
 *
 * @example
 * ```ts
 * parsePort("127.0.0.1:8080:80/tcp"); // {hostIp: "127.0.0.1", hostPort: "8080", containerPort: 80, proto: "tcp"}
 * parsePort("[::1]:8080:80").hostIp; // "::1"
 * ```
 * @throws {SyntaxError} With the reason.
 */
export function parsePort(value: string): PortSpec {
  const [main, proto = "tcp", ...more] = value.split("/");
  if (more.length || !["tcp", "udp", "sctp"].includes(proto)) throw new SyntaxError(`protocol must be tcp, udp or sctp`);
  const bracketed = /^\[([^\]]*)\]:(.*)$/.exec(main!);
  let hostIp = "";
  let ports = main!;
  if (bracketed) {
    [, hostIp = "", ports = ""] = bracketed;
    if (isIP(hostIp) !== 6 || hostIp.includes("%")) throw new SyntaxError(`host IP "[${hostIp}]" is not an IPv6 address (in brackets: [::1]:8080:80)`);
  } else if (main!.startsWith("[")) {
    throw new SyntaxError(`host IP "${main}" has no closing bracket (expected [IPv6]:hostPort:containerPort)`);
  }
  const parts = ports.split(":");
  if (!bracketed && parts.length > 3 && isIP(parts.slice(0, -2).join(":")) === 6) throw new SyntaxError(`write an IPv6 host IP in brackets: [${parts.slice(0, -2).join(":")}]:${parts.slice(-2).join(":")}`);
  if (parts.length < 2 || parts.length > (bracketed ? 2 : 3)) throw new SyntaxError(`expected [hostIP:]hostPort[-end]:containerPort[/proto] (an IPv6 host IP in brackets)`);
  if (parts.length === 3) {
    hostIp = parts.shift()!;
    if (isIP(hostIp) !== 4) throw new SyntaxError(`host IP "${hostIp}" is not an IPv4 address (write an IPv6 one in brackets: [::1]:8080:80)`);
  }
  const [hostPorts, ctr] = parts;
  const [from, to, ...rest] = hostPorts!.split("-");
  const a = portNumber(from ?? "");
  const b = to === undefined ? a : portNumber(to);
  if (rest.length || a === undefined || b === undefined || b < a) throw new SyntaxError(`host port "${hostPorts}" is not a port (1-65535) or a range start-end`);
  const containerPort = portNumber(ctr ?? "");
  if (containerPort === undefined) throw new SyntaxError(`container port "${ctr}" is not a port (1-65535)`);
  return { hostIp, hostPort: a === b ? String(a) : `${a}-${b}`, containerPort, proto: proto as PortSpec["proto"] };
}

/** Parses `/dev/host:/dev/container[:permissions]`. @throws {SyntaxError} */
export function parseDevice(value: string): DeviceSpec {
  const [host, container = host, permissions = "rwm", ...rest] = value.split(":");
  if (rest.length || !host?.startsWith("/") || !container?.startsWith("/")) throw new SyntaxError(`expected /host/path:/container/path[:rwm] with absolute paths`);
  if (!/^[rwm]{1,3}$/.test(permissions)) throw new SyntaxError(`permissions "${permissions}" must be made of r, w and m`);
  return { host, container, permissions };
}

/** Parses `/host/path:/container/path[:propagation]`. @throws {SyntaxError} */
export function parseMount(value: string): MountSpec {
  const [source, destination, propagation = "rprivate", ...rest] = value.split(":");
  if (rest.length || !source?.startsWith("/") || !destination?.startsWith("/")) throw new SyntaxError(`expected /host/path:/container/path[:propagation] with absolute paths`);
  if (source.split("/").includes("..") || destination.split("/").includes("..")) throw new SyntaxError(`paths must not contain ".."`);
  if (!PROPAGATIONS.has(propagation as MountSpec["propagation"])) throw new SyntaxError(`propagation "${propagation}" must be one of ${[...PROPAGATIONS].join(", ")}`);
  return { source, destination, propagation: propagation as MountSpec["propagation"] };
}

/**
 * Reads one component into the container it describes.
 *
 * @example
 * ```ts
 * const spec = componentSpec({ id: "hello", version: "1", config: [{ key: "image", value: "reg/hello:1" }, { key: "env", value: "FOO=BAR" }] });
 * spec.restart.policy; // "unless-stopped"
 * ```
 * @throws {InvalidComponentError} Unknown key, repeated single key, missing image, or a value that does not parse.
 */
export function componentSpec(c: Component, where = `component "${c.id}"`): ContainerSpec {
  const spec: ContainerSpec = {
    name: c.id,
    version: c.version ?? "",
    image: "",
    env: [],
    cmd: [],
    ports: [],
    devices: [],
    mounts: [],
    network: "bridge",
    hosts: [],
    privileged: false,
    restart: { policy: "unless-stopped", maxRetries: 0, timeout: 0 },
    log: { driver: "json-file", maxFiles: 2, maxSize: "100M" },
    memory: { limit: 0, swap: 0, reservation: 0 },
  };
  const seen = new Set<string>();
  (c.config ?? []).forEach(({ key, value }, i) => {
    const bad = (why: string): never => {
      throw new InvalidComponentError(`Cannot use ${where}: config[${i}] ${key}=${JSON.stringify(value.slice(0, 200))}: ${why}`);
    };
    if (!SINGLE.has(key) && !REPEATABLE.has(key)) bad(`unknown key (known: ${COMPONENT_KEYS.join(", ")})`);
    if (SINGLE.has(key) && seen.has(key)) bad("the key appears more than once");
    seen.add(key);
    const parse = <T>(fn: (v: string) => T): T => {
      try {
        return fn(value);
      } catch (err) {
        return bad((err as Error).message);
      }
    };
    const int = (min: number, max: number) => {
      if (!/^-?\d+$/.test(value.trim())) bad("not an integer");
      const n = Number(value);
      if (n < min || n > max) bad(`must be ${min}..${max}`);
      return n;
    };
    const size = () => parseSize(value) ?? bad("not a size (e.g. 100M, 1G, 512k)");
    switch (key) {
      case "image":
        if (!tryParseReference(value)) bad("not an image reference (registry/repository[:tag][@digest])");
        spec.image = value;
        break;
      case "env":
        if (!/^[^=\s]+=/.test(value) && !/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(value)) bad("expected NAME=value");
        spec.env.push(value);
        break;
      case "cmd":
        spec.cmd.push(value);
        break;
      case "port":
        spec.ports.push(parse(parsePort));
        break;
      case "device":
        spec.devices.push(parse(parseDevice));
        break;
      case "mount":
        spec.mounts.push(parse(parseMount));
        break;
      case "host":
        {
          // Checked here: the engine refuses an address it cannot read only at create, half way through an apply.
          const [, name, ip] = /^([a-zA-Z0-9][a-zA-Z0-9_.-]*):(.*)$/.exec(value) ?? [];
          if (!name) bad("expected hostname:ip (or hostname:host_ip)");
          if (ip !== "host_ip" && !isIP(ip!)) bad(`"${ip}" is not an IP address (expected hostname:ip, or hostname:host_ip for the host)`);
          spec.hosts.push(ip === "host_ip" ? `${name}:host-gateway` : value);
        }
        break;
      case "network":
        if (value !== "bridge" && value !== "host") bad("must be bridge or host");
        spec.network = value as "bridge" | "host";
        break;
      case "privileged":
        if (value !== "true" && value !== "false") bad("must be true or false");
        spec.privileged = value === "true";
        break;
      case "restartPolicy":
        if (!RESTART_POLICIES.includes(value as RestartPolicy)) bad(`must be one of ${RESTART_POLICIES.join(", ")}`);
        spec.restart.policy = value as RestartPolicy;
        break;
      case "restartMaxRetries":
        spec.restart.maxRetries = int(0, 1_000_000);
        break;
      case "restartTimeout":
        spec.restart.timeout = int(0, 3600);
        break;
      case "logDriver":
        if (!LOG_DRIVERS.has(value)) bad(`must be one of ${[...LOG_DRIVERS].join(", ")}`);
        spec.log.driver = value;
        break;
      case "logMaxFiles":
        spec.log.maxFiles = int(1, 1000);
        break;
      case "logMaxSize":
        if (parseSize(value) === undefined) bad("not a size (e.g. 100M)");
        spec.log.maxSize = value;
        break;
      case "memory":
        spec.memory.limit = size();
        if (spec.memory.limit && spec.memory.limit < 6 << 20) bad("the engine needs at least 6M");
        break;
      case "memorySwap":
        spec.memory.swap = value.trim() === "-1" ? -1 : size();
        break;
      case "memoryReservation":
        spec.memory.reservation = size();
        break;
    }
  });
  if (!spec.image) throw new InvalidComponentError(`Cannot use ${where}: no image (config key "image")`);
  if (spec.restart.maxRetries && spec.restart.policy !== "on-failure") throw new InvalidComponentError(`Cannot use ${where}: restartMaxRetries needs restartPolicy on-failure`);
  if (spec.memory.swap > 0 && spec.memory.swap < spec.memory.limit) throw new InvalidComponentError(`Cannot use ${where}: memorySwap must be at least memory (it counts memory plus swap)`);
  if (spec.memory.swap && !spec.memory.limit) throw new InvalidComponentError(`Cannot use ${where}: memorySwap needs memory`);
  if (spec.network === "host" && spec.ports.length) throw new InvalidComponentError(`Cannot use ${where}: port mappings do not apply with network host`);
  return spec;
}

/** The part of a spec that can only change by recreating the container. */
export function recreateKey(s: ContainerSpec): string {
  const { restart, memory: _m, ...rest } = s;
  return JSON.stringify({ ...rest, restartTimeout: restart.timeout });
}

/** The part the engine changes in place (`POST /containers/{id}/update`). */
export function updateKey(s: ContainerSpec): string {
  return JSON.stringify({ policy: s.restart.policy, maxRetries: s.restart.maxRetries, memory: s.memory });
}
