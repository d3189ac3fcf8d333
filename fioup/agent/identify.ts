/**
 * The first phase of an apply: read the desired state's containers domain
 * (its config and components), diff it against the engine, and persist the
 * activity with what it found (the old containers' IDs, whether they ran,
 * their in-place settings) before anything changes.
 *
 * @module
 */
import { componentSpec, InvalidComponentError, type ContainerSpec } from "./component-config.ts";
import { isOldName, OLD_NAME_MARK, readContainers } from "./current-state.ts";
import { ConflictError, diffContainers } from "./diff.ts";
import { CONTAINERS_DOMAIN, type DesiredStateMessage } from "./messages.ts";
import type { Activity } from "./activity.ts";
import type { ApplyDeps } from "./_phase.ts";
import { commaList } from "../../lib/cli/comma-list.ts";

/**
 * The desired state cannot be applied: answered with IDENTIFICATION_FAILED and this message.
 * `onDevice`: not the message's fault alone but what the device has now (a component named like a
 * container someone else owns), so the same message may be taken later. A component named like a
 * system container is not `onDevice`: the check reads only the names (the message's own
 * `systemContainers`, else the agent's config), never the engine, so the same message fails the same
 * way at every try and is recorded as refused (by digest). Where the name came from the agent's
 * config, `configured` holds that list: the refusal is recorded with it, and a changed config
 * judges the message again (activity.ts).
 */
export class IdentificationError extends Error {
  override name = "IdentificationError";
  constructor(
    message: string,
    readonly onDevice = false,
    readonly configured?: { systemContainers: string[] },
  ) {
    super(message);
  }
}

const DOMAIN_KEYS = ["systemContainers", "commandFlow"];

/**
 * Reads the desired state and plans it against the engine; persists the activity.
 * @throws {IdentificationError} A domain other than one containers domain, bad domain config, bad component, duplicate names, a name with the agent's reserved suffix, a name owned by someone else.
 */
export async function identify(
  d: ApplyDeps,
  msg: DesiredStateMessage,
  defaults: { systemContainers: string[]; commandFlow: boolean },
): Promise<Activity> {
  const domains = msg.payload.domains;
  // Like Kanto's container update agent: exactly one domain, its own. Applying the first of two
  // "containers" domains would destroy the containers only the second one lists.
  for (const [i, x] of domains.entries()) {
    const where = `Cannot apply the desired state: payload.domains[${i}]`;
    if (x.id !== CONTAINERS_DOMAIN) throw new IdentificationError(`${where}: domain "${x.id}" is not one this agent applies (only "${CONTAINERS_DOMAIN}"); send each domain to its own agent`);
    if (i > 0) throw new IdentificationError(`${where}: a second "${CONTAINERS_DOMAIN}" domain (the first is payload.domains[0]); put all its components in one`);
  }
  const domain = domains[0];
  if (!domain) throw new IdentificationError(`Cannot apply the desired state: it has no "${CONTAINERS_DOMAIN}" domain`);
  let systemContainers = defaults.systemContainers;
  let ownSystemContainers = false;
  let commandFlow = defaults.commandFlow;
  (domain.config ?? []).forEach(({ key, value }, i) => {
    const where = `payload.domains[0].config[${i}]`;
    if (!DOMAIN_KEYS.includes(key)) throw new IdentificationError(`Cannot apply the desired state: ${where}: unknown key "${key}" (known: ${DOMAIN_KEYS.join(", ")})`);
    if (key === "systemContainers") {
      systemContainers = commaList(value);
      ownSystemContainers = true;
    }
    if (key === "commandFlow") {
      if (value !== "true" && value !== "false") throw new IdentificationError(`Cannot apply the desired state: ${where}: commandFlow must be true or false`);
      commandFlow = value === "true";
    }
  });
  const specs: ContainerSpec[] = [];
  const names = new Set<string>();
  for (const [i, c] of (domain.components ?? []).entries()) {
    const where = `payload.domains[0].components[${i}] ("${c.id}")`;
    if (names.has(c.id)) throw new IdentificationError(`Cannot apply the desired state: ${where}: the id appears twice`);
    names.add(c.id);
    if (isOldName(c.id)) throw new IdentificationError(`Cannot apply the desired state: ${where}: "${OLD_NAME_MARK}" is reserved for the old containers the agent sets aside during an apply; choose an id without it`);
    try {
      specs.push(componentSpec(c, where));
    } catch (err) {
      if (err instanceof InvalidComponentError) throw new IdentificationError(err.message.replace(/^Cannot use /, "Cannot apply the desired state: "));
      throw err;
    }
  }
  const current = await readContainers(d.engine, d.instance);
  let planned;
  try {
    planned = diffContainers(specs, current, { instance: d.instance, systemContainers });
  } catch (err) {
    if (err instanceof ConflictError) {
      const configured = err.kind === "system" && !ownSystemContainers ? { systemContainers } : undefined;
      throw new IdentificationError(err.message, err.kind === "owner", configured);
    }
    throw err;
  }
  const a: Activity = {
    activityId: msg.activityId,
    startedAt: new Date().toISOString(),
    commandFlow,
    phase: "identified",
    status: "IDENTIFIED",
    actions: planned.map((p) => ({
      kind: p.kind,
      name: p.name,
      version: p.version,
      ...(p.spec ? { spec: p.spec } : {}),
      ...(p.current ? { old: { id: p.current.id, running: p.current.running, ...(p.current.update ? { update: p.current.update } : {}) } } : {}),
      status: "IDENTIFIED",
    })),
  };
  d.store.save(a);
  return a;
}

