/**
 * The container calls the agent needs, on top of the runtime's one Docker
 * Engine client (create, start, rename, update, remove, full inspect; stop is the runtime's).
 *
 * @module
 */
import { DockerEngine, EngineError } from "../runtime/docker-engine.ts";

/** What `GET /containers/{id}/json` says that the agent reads. */
export interface ContainerDetails {
  Id: string;
  Name: string;
  State: { Status: string; Running: boolean; ExitCode: number; Error: string };
  Config: { Image: string; Env: string[] | null; Labels: Record<string, string> | null };
  Image: string;
  HostConfig: {
    RestartPolicy?: { Name: string; MaximumRetryCount: number };
    Memory?: number;
    MemorySwap?: number;
    MemoryReservation?: number;
  };
}

export class ContainerEngine extends DockerEngine {
  /** POST /containers/create?name=; returns the new ID. @throws {EngineError} */
  async createContainer(name: string, body: Record<string, unknown>): Promise<string> {
    const out = await this.json<{ Id: string }>(`Cannot create container "${name}"`, "POST", `/containers/create?name=${encodeURIComponent(name)}`, {
      body: JSON.stringify(body),
      headers: { "content-type": "application/json" },
    });
    return out.Id;
  }

  /** POST /containers/{id}/start (already running is fine). @throws {EngineError} */
  async startContainer(id: string): Promise<void> {
    await this.simple(`Cannot start container "${id}"`, "POST", `/containers/${encodeURIComponent(id)}/start`, [304]);
  }

  /** POST /containers/{id}/update (restart policy, memory). @throws {EngineError} */
  async updateContainer(id: string, body: Record<string, unknown>): Promise<void> {
    await this.simple(`Cannot update container "${id}"`, "POST", `/containers/${encodeURIComponent(id)}/update`, [], body);
  }

  /** GET /containers/{id}/json with the host config, or undefined when it does not exist. @throws {EngineError} */
  async containerDetails(id: string): Promise<ContainerDetails | undefined> {
    return (await this.inspectContainer(id)) as unknown as ContainerDetails | undefined;
  }
}

export { EngineError };
