/**
 * A minimal Docker Engine API client over the unix socket (Bun `fetch` with
 * `unix:`), covering only what the runtime needs. API v1.41 is what Docker
 * 20.10 speaks, and later engines still accept it.
 *
 * @module
 */
import { netWhy } from "../../lib/net/why.ts";

export const ENGINE_API_VERSION = "v1.41";

/** A call to the Docker Engine failed (unreachable, or answered with an error). */
export class EngineError extends Error {
  override name = "EngineError";
  constructor(
    message: string,
    readonly status?: number,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

export interface EngineVersion {
  Version: string;
  ApiVersion: string;
  Os: string;
  Arch: string;
}

export interface ContainerSummary {
  Id: string;
  Names: string[];
  Image: string;
  ImageID: string;
  Labels: Record<string, string>;
  /** "created" | "running" | "restarting" | "exited" | "paused" | "dead" | "removing" */
  State: string;
  /** Human text, e.g. "Up 3 seconds (healthy)". */
  Status: string;
  Created: number;
}

export interface ContainerInspect {
  Id: string;
  Name: string;
  RestartCount: number;
  State: {
    Status: string;
    Running: boolean;
    Restarting: boolean;
    ExitCode: number;
    Error: string;
    StartedAt: string;
    FinishedAt: string;
    Health?: { Status: string; FailingStreak: number; Log?: { ExitCode: number; Output: string }[] };
  };
  Config: { Image: string; Labels: Record<string, string> | null; Healthcheck?: { Test?: string[] } };
  Image: string;
}

export interface ImageInspect {
  Id: string;
  RepoTags: string[] | null;
  RepoDigests: string[] | null;
  Size: number;
  /** The image's layers as diff_ids (sha256 of each uncompressed layer tar), bottom first. */
  RootFS?: { Type: string; Layers?: string[] };
}

export interface ImageSummary {
  Id: string;
  RepoTags: string[] | null;
  Containers: number;
}

/** Resolves the engine socket path from a `unix://` host, `$DOCKER_HOST`, or the default. */
export function socketPathFromHost(host: string | undefined = process.env.DOCKER_HOST): string {
  if (!host) return "/var/run/docker.sock";
  if (!host.startsWith("unix://")) {
    throw new EngineError(`Cannot use Docker host "${host}": only unix:// sockets are supported`);
  }
  return host.slice("unix://".length);
}

/** Talks to one Docker Engine over its unix socket. */
export class DockerEngine {
  readonly socketPath: string;

  constructor(host?: string) {
    this.socketPath = socketPathFromHost(host);
  }

  /** `unix://<socket>`, for DOCKER_HOST of child processes. */
  get host(): string {
    return `unix://${this.socketPath}`;
  }

  protected async call(method: string, path: string, init: { body?: RequestInit["body"]; headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<Response> {
    const url = `http://localhost/${ENGINE_API_VERSION}${path}`;
    try {
      return await fetch(url, { method, unix: this.socketPath, ...init } as RequestInit);
    } catch (cause) {
      // Bun's fetch says "ENOENT: Was there a typo in the url or port?" for a socket: say what it means here.
      const code = (cause as NodeJS.ErrnoException).code;
      const why =
        code === "ENOENT" ? "no such socket (is Docker installed and running? DOCKER_HOST names another socket)"
        : code === "ECONNREFUSED" ? "nothing answers on the socket (is dockerd running?)"
        : code === "EACCES" ? "permission denied (run as root or as a member of the docker group)"
        : netWhy(cause);
      throw new EngineError(`Cannot reach the Docker Engine at ${this.socketPath}: ${why}`, undefined, { cause });
    }
  }

  protected async fail(what: string, res: Response): Promise<never> {
    let detail = "";
    try {
      const text = await res.text();
      try {
        detail = (JSON.parse(text) as { message?: string }).message ?? text;
      } catch {
        detail = text;
      }
    } catch {
      // body unreadable: the status says enough
    }
    throw new EngineError(`${what}: engine answered ${res.status}${detail ? ` ${detail.trim()}` : ""}`, res.status);
  }

  /** A call whose answer has no body to read: a 2xx or a status of `ok` is fine (the status is returned), any other fails saying `what`. */
  protected async simple(what: string, method: string, path: string, ok: number[] = [], body?: unknown): Promise<number> {
    const res = await this.call(method, path, body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } });
    if (!res.ok && !ok.includes(res.status)) return this.fail(what, res);
    await res.body?.cancel();
    return res.status;
  }

  protected async json<T>(what: string, method: string, path: string, init?: { body?: RequestInit["body"]; headers?: Record<string, string> }): Promise<T> {
    const res = await this.call(method, path, init);
    if (!res.ok) return this.fail(what, res);
    return (await res.json()) as T;
  }

  /** GET /_ping: true when the engine answers OK. */
  async ping(): Promise<boolean> {
    try {
      const res = await this.call("GET", "/_ping");
      await res.body?.cancel();
      return res.ok;
    } catch {
      return false;
    }
  }

  /** GET /info: the engine's data root (`DockerRootDir`), where loaded layers land. @throws {EngineError} */
  info(): Promise<{ DockerRootDir: string; Driver?: string }> {
    return this.json("Cannot get the Docker Engine info", "GET", "/info");
  }

  /** GET /version. @throws {EngineError} */
  version(): Promise<EngineVersion> {
    return this.json("Cannot get the Docker Engine version", "GET", "/version");
  }

  /**
   * POST /images/load with a streamed docker-save tar. The engine answers 200
   * and reports failures inside its JSON progress stream, so this reads the
   * whole stream and throws on the first `error`. Returns the `stream` lines
   * (e.g. "Loaded image: repo:tag").
   * @throws {EngineError}
   */
  async loadImages(tar: ReadableStream<Uint8Array>, signal?: AbortSignal): Promise<string[]> {
    const res = await this.call("POST", "/images/load?quiet=1", {
      body: tar,
      headers: { "content-type": "application/x-tar" },
      signal,
    });
    if (!res.ok) return this.fail("Cannot load images", res);
    const lines: string[] = [];
    const text = await res.text();
    // The stream is a sequence of JSON objects, usually one per line.
    for (const raw of text.split(/\r?\n/)) {
      const line = raw.trim();
      if (!line) continue;
      let msg: { stream?: string; error?: string; errorDetail?: { message?: string } };
      try {
        msg = JSON.parse(line);
      } catch {
        throw new EngineError(`Cannot load images: unexpected engine output ${JSON.stringify(line.slice(0, 200))}`);
      }
      if (msg.error || msg.errorDetail) {
        throw new EngineError(`Cannot load images: ${msg.errorDetail?.message ?? msg.error}`);
      }
      if (msg.stream?.trim()) lines.push(msg.stream.trim());
    }
    return lines;
  }

  /** GET /images/{ref}/json, or undefined when the engine has no such image. @throws {EngineError} */
  async inspectImage(ref: string): Promise<ImageInspect | undefined> {
    const res = await this.call("GET", `/images/${encodeURIComponent(ref)}/json`);
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    if (!res.ok) return this.fail(`Cannot inspect image "${ref}"`, res);
    return (await res.json()) as ImageInspect;
  }

  /**
   * GET /images/{ref}/get: the image as a `docker save` tar, streamed (layers uncompressed).
   * @throws {EngineError}
   */
  async saveImage(ref: string, signal?: AbortSignal): Promise<ReadableStream<Uint8Array>> {
    const res = await this.call("GET", `/images/${encodeURIComponent(ref)}/get`, signal ? { signal } : {});
    if (!res.ok || !res.body) return this.fail(`Cannot export image "${ref}"`, res);
    return res.body;
  }

  /** GET /images/json (all tagged images). @throws {EngineError} */
  listImages(): Promise<ImageSummary[]> {
    return this.json("Cannot list images", "GET", "/images/json");
  }

  /** POST /images/{ref}/tag: tags `ref` as `repository:tag`. @throws {EngineError} */
  async tagImage(ref: string, repository: string, tag: string): Promise<void> {
    const q = new URLSearchParams({ repo: repository, tag });
    const res = await this.call("POST", `/images/${encodeURIComponent(ref)}/tag?${q}`);
    if (!res.ok) return this.fail(`Cannot tag image "${ref}" as ${repository}:${tag}`, res);
    await res.body?.cancel();
  }

  /** DELETE /images/{ref} (untags; deletes when no tag is left). Missing images are ignored. @throws {EngineError} */
  async removeImage(ref: string, opts: { force?: boolean } = {}): Promise<void> {
    const res = await this.call("DELETE", `/images/${encodeURIComponent(ref)}?force=${opts.force ? 1 : 0}`);
    if (res.status === 404) {
      await res.body?.cancel();
      return;
    }
    if (!res.ok) return this.fail(`Cannot remove image "${ref}"`, res);
    await res.body?.cancel();
  }

  /**
   * POST /images/prune (dangling images only unless `all`; with `olderThan`, e.g. "10m", only
   * images created before that long ago). Returns reclaimed bytes. @throws {EngineError}
   */
  async pruneImages(opts: { all?: boolean; olderThan?: string } = {}): Promise<number> {
    const filters = JSON.stringify({ dangling: [opts.all ? "false" : "true"], ...(opts.olderThan ? { until: [opts.olderThan] } : {}) });
    const out = await this.json<{ SpaceReclaimed?: number }>("Cannot prune images", "POST", `/images/prune?filters=${encodeURIComponent(filters)}`);
    return out.SpaceReclaimed ?? 0;
  }

  /** GET /containers/json?all=1, filtered by labels (`key=value` or `key`). @throws {EngineError} */
  listContainers(labels: string[] = []): Promise<ContainerSummary[]> {
    const q = new URLSearchParams({ all: "1" });
    if (labels.length) q.set("filters", JSON.stringify({ label: labels }));
    return this.json("Cannot list containers", "GET", `/containers/json?${q}`);
  }

  /** GET /containers/{id}/json, or undefined when it no longer exists. @throws {EngineError} */
  async inspectContainer(id: string): Promise<ContainerInspect | undefined> {
    const res = await this.call("GET", `/containers/${encodeURIComponent(id)}/json`);
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    if (!res.ok) return this.fail(`Cannot inspect container "${id}"`, res);
    return (await res.json()) as ContainerInspect;
  }

  /** GET /containers/{id}/logs (stdout+stderr, last `tail` lines), as raw text with stream headers stripped. */
  async containerLogs(id: string, tail = 20): Promise<string> {
    const res = await this.call("GET", `/containers/${encodeURIComponent(id)}/logs?stdout=1&stderr=1&tail=${tail}`);
    if (!res.ok) return this.fail(`Cannot read logs of container "${id}"`, res);
    const buf = new Uint8Array(await res.arrayBuffer());
    // Non-TTY logs are multiplexed: 8-byte header (stream, 0,0,0, size BE32) per frame.
    const out: Uint8Array[] = [];
    let i = 0;
    while (i + 8 <= buf.length && buf[i + 1] === 0 && buf[i + 2] === 0 && buf[i + 3] === 0 && (buf[i] ?? 9) <= 2) {
      const size = new DataView(buf.buffer, buf.byteOffset + i + 4, 4).getUint32(0);
      out.push(buf.subarray(i + 8, i + 8 + size));
      i += 8 + size;
    }
    if (i === 0) return new TextDecoder().decode(buf);
    return out.map((b) => new TextDecoder().decode(b)).join("");
  }

  /**
   * POST /containers/{id}/stop: sends the container's stop signal, and SIGKILL after
   * `timeoutSeconds` (default: the container's own stop timeout, else 10 s). A container
   * already stopped or gone is fine. @throws {EngineError}
   */
  async stopContainer(id: string, timeoutSeconds?: number): Promise<void> {
    const q = timeoutSeconds === undefined ? "" : `?t=${Math.max(0, Math.ceil(timeoutSeconds))}`;
    await this.simple(`Cannot stop container "${id}"`, "POST", `/containers/${encodeURIComponent(id)}/stop${q}`, [304, 404]);
  }

  /** POST /containers/{id}/rename?name=. @throws {EngineError} */
  async renameContainer(id: string, name: string): Promise<void> {
    await this.simple(`Cannot rename container "${id}" to "${name}"`, "POST", `/containers/${encodeURIComponent(id)}/rename?name=${encodeURIComponent(name)}`);
  }

  /** DELETE /containers/{id}?force=1, running or not (its anonymous volumes are kept); one already gone is fine. @throws {EngineError} */
  async removeContainer(id: string): Promise<void> {
    await this.simple(`Cannot remove container "${id}"`, "DELETE", `/containers/${encodeURIComponent(id)}?force=1`, [404]);
  }

  /** POST /containers/prune: removes stopped containers. @throws {EngineError} */
  async pruneContainers(): Promise<void> {
    await this.json("Cannot prune containers", "POST", "/containers/prune");
  }
}
