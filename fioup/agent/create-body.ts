/**
 * A {@link ContainerSpec} as the Docker Engine API wants it: the body of
 * `POST /containers/create` and of `POST /containers/{id}/update` (the part
 * that changes in place: restart policy and memory limits).
 *
 * @module
 */
import type { ContainerSpec } from "./component-config.ts";

/** Labels the agent puts on every container it creates. */
export const LABELS = {
  /** The agent instance that owns the container (only its own containers are ever destroyed). */
  owner: "io.fioup.agent",
  /** The component version. */
  version: "io.fioup.agent.version",
  /** The spec as JSON: what the diff compares. */
  spec: "io.fioup.agent.spec",
  /** The activity that created it (a crashed apply finds its new containers by this). */
  activity: "io.fioup.agent.activity",
} as const;

/** Compose labels its containers with the project: those belong to compose apps. */
export const COMPOSE_PROJECT_LABEL = "com.docker.compose.project";

/** The `POST /containers/create` body for `spec`, run from `image` (a name or image ID the engine has). */
export function createBody(spec: ContainerSpec, image: string, labels: Record<string, string>): Record<string, unknown> {
  const exposed: Record<string, object> = {};
  const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
  for (const p of spec.ports) {
    const key = `${p.containerPort}/${p.proto}`;
    exposed[key] = {};
    (bindings[key] ??= []).push({ HostIp: p.hostIp, HostPort: p.hostPort });
  }
  const log: Record<string, string> = {};
  if (spec.log.driver === "json-file" || spec.log.driver === "local") {
    log["max-file"] = String(spec.log.maxFiles);
    log["max-size"] = spec.log.maxSize.toLowerCase().replace(/b$/, "");
  }
  return {
    Image: image,
    Env: spec.env,
    ...(spec.cmd.length ? { Cmd: spec.cmd } : {}),
    Labels: labels,
    ExposedPorts: exposed,
    ...(spec.restart.timeout ? { StopTimeout: spec.restart.timeout } : {}),
    HostConfig: {
      PortBindings: bindings,
      Devices: spec.devices.map((d) => ({ PathOnHost: d.host, PathInContainer: d.container, CgroupPermissions: d.permissions })),
      Mounts: spec.mounts.map((m) => ({ Type: "bind", Source: m.source, Target: m.destination, BindOptions: { Propagation: m.propagation } })),
      NetworkMode: spec.network,
      ExtraHosts: spec.hosts,
      Privileged: spec.privileged,
      LogConfig: { Type: spec.log.driver, Config: log },
      ...updateBody(spec),
    },
  };
}

/** The `POST /containers/{id}/update` body: restart policy and memory. */
export function updateBody(spec: ContainerSpec): Record<string, unknown> {
  return {
    RestartPolicy: { Name: spec.restart.policy, MaximumRetryCount: spec.restart.policy === "on-failure" ? spec.restart.maxRetries : 0 },
    Memory: spec.memory.limit,
    // The engine's own default (twice the limit), written out so the diff can compare it.
    MemorySwap: spec.memory.limit > 0 && spec.memory.swap === 0 ? 2 * spec.memory.limit : spec.memory.swap,
    MemoryReservation: spec.memory.reservation,
  };
}
