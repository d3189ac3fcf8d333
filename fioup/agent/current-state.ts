/**
 * The container inventory: what the engine runs, read once per diff and
 * published (retained) on `containersupdate/currentstate` as software nodes:
 * one per container this agent manages plus the system containers that
 * exist, under a root node for the containers domain.
 *
 * @module
 */
import { COMPOSE_PROJECT_LABEL, LABELS } from "./create-body.ts";
import { oldName } from "./activity.ts";
import type { ContainerEngine } from "./container-engine.ts";
import type { CurrentContainer } from "./diff.ts";
import { componentId } from "./feedback.ts";

export interface SoftwareNode {
  id: string;
  version: string;
  name?: string;
  type: "APPLICATION" | "CONTAINER";
  parameters?: { key: string; value: string }[];
}

export interface CurrentState {
  softwareNodes: SoftwareNode[];
  associations: { sourceId: string; targetId: string }[];
}

/** What {@link oldName} puts between a name and its activity's hash (`.fioup-old-`), read from it so it is written once. */
export const OLD_NAME_MARK = oldName("", "").replace(/[0-9a-z]+$/, "");

/** An old container the agent set aside during an apply (rollback gives it its name back; cleanup removes it). */
export const isOldName = (name: string) => name.includes(OLD_NAME_MARK);

/**
 * Every container of the engine (running or not); the in-place settings are read for the agent's own.
 * @throws {EngineError}
 */
export async function readContainers(engine: ContainerEngine, instance: string): Promise<(CurrentContainer & { image: string; state: string })[]> {
  const list = await engine.listContainers();
  const out: (CurrentContainer & { image: string; state: string })[] = [];
  await Promise.all(
    list.map(async (c) => {
      const labels = c.Labels ?? {};
      const item: CurrentContainer & { image: string; state: string } = {
        id: c.Id,
        name: (c.Names[0] ?? "").replace(/^\//, ""),
        running: c.State === "running",
        labels,
        image: c.Image,
        state: c.State,
      };
      if (labels[LABELS.owner] === instance && !(COMPOSE_PROJECT_LABEL in labels)) {
        const d = await engine.containerDetails(c.Id);
        if (!d) return; // removed meanwhile
        const h = d.HostConfig;
        item.update = {
          policy: h.RestartPolicy?.Name || "no",
          maxRetries: h.RestartPolicy?.MaximumRetryCount ?? 0,
          memory: h.Memory ?? 0,
          swap: h.MemorySwap ?? 0,
          reservation: h.MemoryReservation ?? 0,
        };
      }
      out.push(item);
    }),
  );
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** The inventory payload for the containers the agent manages and the system containers that exist. */
export function currentState(containers: Awaited<ReturnType<typeof readContainers>>, o: { instance: string; systemContainers: string[]; version: string }): CurrentState {
  const system = new Set(o.systemContainers);
  const nodes: SoftwareNode[] = [{ id: "containers", version: o.version, name: "fioup container agent", type: "APPLICATION" }];
  const associations: CurrentState["associations"] = [];
  for (const c of containers) {
    const managed = c.labels[LABELS.owner] === o.instance && !(COMPOSE_PROJECT_LABEL in c.labels);
    if (!managed && !system.has(c.name)) continue;
    if (isOldName(c.name)) continue; // kept for rollback during an apply
    const params = [
      { key: "image", value: c.image },
      { key: "status", value: c.state },
      { key: "container.id", value: c.id },
    ];
    if (system.has(c.name)) params.push({ key: "systemContainer", value: "true" });
    nodes.push({ id: componentId(c.name), version: c.labels[LABELS.version] ?? "", type: "CONTAINER", parameters: params });
    associations.push({ sourceId: "containers", targetId: componentId(c.name) });
  }
  return { softwareNodes: nodes, associations };
}
