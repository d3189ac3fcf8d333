/**
 * What turns the containers that run into the desired ones, container by
 * container (matched by name):
 *
 * - create: desired, no container of that name;
 * - recreate: image, env, cmd, ports, devices, mounts, network, hosts,
 *   privileged, log config, stop timeout or version differ, or the container
 *   is not running though its restart policy says it should (always,
 *   unless-stopped: the new one starts, and a rollback puts the stopped one
 *   back as it was);
 * - update (in place, same container ID): only the restart policy or memory
 *   limits differ (a limit removed needs a recreate: the engine cannot unset it);
 * - destroy: a container this agent created that is no longer desired;
 * - keep: everything else.
 *
 * System containers (from the config, or the desired state's own
 * `systemContainers`), containers of compose apps and containers the agent
 * did not create are never touched.
 *
 * @module
 */
import { recreateKey, type ContainerSpec } from "./component-config.ts";
import { COMPOSE_PROJECT_LABEL, LABELS, updateBody } from "./create-body.ts";

export type ActionKind = "create" | "recreate" | "update" | "destroy" | "keep";

/** A container as the diff sees it. */
export interface CurrentContainer {
  id: string;
  name: string;
  running: boolean;
  labels: Record<string, string>;
  /** The in-place part, as the engine reports it. */
  update?: { policy: string; maxRetries: number; memory: number; swap: number; reservation: number };
}

export interface Action {
  kind: ActionKind;
  name: string;
  version: string;
  spec?: ContainerSpec;
  current?: CurrentContainer;
}

/**
 * The desired state cannot be applied as asked (a name taken by a container the agent must not touch).
 * `kind`: "system" — the component names a system container, a check against the configured names
 * alone, which no change on the device undoes; "owner" — a container of that name exists and
 * belongs to another owner (a compose app, someone else), which may go.
 */
export class ConflictError extends Error {
  override name = "ConflictError";
  constructor(
    message: string,
    readonly kind: "system" | "owner",
  ) {
    super(message);
  }
}

function desiredUpdate(spec: ContainerSpec) {
  const b = updateBody(spec) as { RestartPolicy: { Name: string; MaximumRetryCount: number }; Memory: number; MemorySwap: number; MemoryReservation: number };
  return { policy: b.RestartPolicy.Name, maxRetries: b.RestartPolicy.MaximumRetryCount, memory: b.Memory, swap: b.MemorySwap, reservation: b.MemoryReservation };
}

/** The recreate part of the spec a container was created with (from its label). */
function createdKey(c: CurrentContainer): string | undefined {
  try {
    return recreateKey(JSON.parse(c.labels[LABELS.spec] ?? "") as ContainerSpec);
  } catch {
    return undefined;
  }
}

/**
 * Plans the actions, in a stable order: destroy first (frees names and ports), then the desired components in message order.
 * @throws {ConflictError} A desired component names a system container, or a container this agent does not own.
 */
export function diffContainers(desired: ContainerSpec[], current: CurrentContainer[], o: { instance: string; systemContainers: string[] }): Action[] {
  const system = new Set(o.systemContainers);
  const byName = new Map(current.map((c) => [c.name, c]));
  const mine = (c: CurrentContainer) => c.labels[LABELS.owner] === o.instance && !(COMPOSE_PROJECT_LABEL in c.labels) && !system.has(c.name);
  const wanted = new Set(desired.map((d) => d.name));
  const actions: Action[] = [];
  for (const c of current) {
    if (!wanted.has(c.name) && mine(c)) actions.push({ kind: "destroy", name: c.name, version: c.labels[LABELS.version] ?? "", current: c });
  }
  for (const spec of desired) {
    if (system.has(spec.name)) throw new ConflictError(`Cannot apply component "${spec.name}": it is a system container, which the agent never touches`, "system");
    const c = byName.get(spec.name);
    if (!c) {
      actions.push({ kind: "create", name: spec.name, version: spec.version, spec });
      continue;
    }
    if (!mine(c)) {
      const whose = COMPOSE_PROJECT_LABEL in c.labels ? `compose app "${c.labels[COMPOSE_PROJECT_LABEL]}"` : "another owner";
      throw new ConflictError(`Cannot apply component "${spec.name}": a container of that name belongs to ${whose}`, "owner");
    }
    const base = { name: spec.name, version: spec.version, spec, current: c };
    const want = desiredUpdate(spec);
    // A stopped container is brought back only where its restart policy says it should run
    // (always, unless-stopped: the default): one with "no" or "on-failure" may be a one-shot
    // that finished (a migration), which a later desired state must not run again.
    const shouldRun = want.policy === "always" || want.policy === "unless-stopped";
    if ((!c.running && shouldRun) || createdKey(c) !== recreateKey(spec)) {
      actions.push({ kind: "recreate", ...base });
      continue;
    }
    const have = c.update;
    const same = have && JSON.stringify(have) === JSON.stringify(want);
    if (same) actions.push({ kind: "keep", ...base });
    else if (have && ((want.memory === 0 && have.memory !== 0) || (want.reservation === 0 && have.reservation !== 0) || (want.swap === 0 && have.swap !== 0))) {
      actions.push({ kind: "recreate", ...base });
    } else actions.push({ kind: "update", ...base });
  }
  return actions;
}
