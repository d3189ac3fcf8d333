/**
 * The docker CLI calls publish makes: `docker build` for a Dockerfile,
 * `docker image inspect` to see whether the local engine holds an image, and
 * `docker save` to take an image out of it. DOCKER_HOST (and the rest of the
 * environment) is passed through, so CI points publish at whichever engine it
 * likes.
 *
 * @module
 */
import { stopsWithCommand } from "../../lib/cli/interrupt.ts";

export class DockerCommandError extends Error {
  override name = "DockerCommandError";
}

async function docker(args: string[], what: string, env: Record<string, string | undefined>, onLine?: (line: string) => void): Promise<string> {
  let proc;
  try {
    proc = Bun.spawn(["docker", ...args], { stdout: "pipe", stderr: "pipe", stdin: "ignore", env });
  } catch (cause) {
    throw new DockerCommandError(`Cannot ${what}: docker is not installed or not runnable`, { cause });
  }
  // A publish stopped by Ctrl-C or SIGTERM must not leave a `docker build` going after it is gone.
  stopsWithCommand(proc);
  const lines: string[] = [];
  const pump = async (s: ReadableStream<Uint8Array>) => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of s) {
      buf += dec.decode(chunk, { stream: true });
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(line);
        if (lines.length > 200) lines.shift();
        onLine?.(line);
      }
    }
    if (buf) {
      lines.push(buf);
      onLine?.(buf);
    }
  };
  const [, , code] = await Promise.all([pump(proc.stdout), pump(proc.stderr), proc.exited]);
  if (code !== 0) {
    const tail = lines.filter((l) => l.trim() && !/DEPRECATED|legacy builder|buildx|docs\.docker\.com/.test(l)).slice(-8).join("\n");
    throw new DockerCommandError(`Cannot ${what}: docker exited with ${code}${tail ? `\n${tail}` : ""}`);
  }
  return lines.join("\n");
}

/** Options of {@link dockerBuild}. */
export interface DockerBuildOptions {
  platform?: string;
  /** Absolute path of the Dockerfile (default `<dir>/Dockerfile`). */
  dockerfile?: string;
  /** The stage to build (`--target`). */
  target?: string;
  buildArgs?: Record<string, string>;
  env?: Record<string, string | undefined>;
  onLine?: (line: string) => void;
}

/**
 * `docker build --force-rm -t TAG [--platform P] [-f FILE] [--target T] [--build-arg K=V...] DIR`.
 * `--force-rm`: the legacy builder (an engine without buildx) otherwise leaves the container of
 * a failed step behind, and a CI runner collects one per failed build; BuildKit runs no such
 * containers and takes the flag as a no-op.
 *
 * @throws {DockerCommandError}
 */
export async function dockerBuild(dir: string, tag: string, opts: DockerBuildOptions = {}): Promise<void> {
  const args = [
    "build",
    "--force-rm",
    "-t",
    tag,
    ...(opts.platform ? ["--platform", opts.platform] : []),
    ...(opts.dockerfile ? ["-f", opts.dockerfile] : []),
    ...(opts.target ? ["--target", opts.target] : []),
    ...Object.entries(opts.buildArgs ?? {}).flatMap(([k, v]) => ["--build-arg", `${k}=${v}`]),
    dir,
  ];
  await docker(args, `build ${dir}`, opts.env ?? process.env, opts.onLine);
}

/** What the local engine says about an image it holds. */
export interface LocalImage {
  /** The image ID (config digest). */
  id: string;
  repoTags: string[];
  repoDigests: string[];
}

/** Where the local engine is, for messages: DOCKER_HOST or docker's default socket. */
export function engineName(env: Record<string, string | undefined> = process.env): string {
  return env.DOCKER_HOST ? `the local engine at ${env.DOCKER_HOST}` : "the local engine (unix:///var/run/docker.sock)";
}

/**
 * Looks an image up in the local engine (`docker image inspect`).
 *
 * @returns The image, or `{ missing: reason }` when the engine does not hold it or cannot be asked.
 */
export async function dockerInspectImage(ref: string, opts: { env?: Record<string, string | undefined> } = {}): Promise<LocalImage | { missing: string }> {
  let out: string;
  try {
    out = await docker(["image", "inspect", "--format", "{{json .}}", ref], `inspect image ${ref}`, opts.env ?? process.env);
  } catch (err) {
    const msg = (err as Error).message;
    if (/no such image|not found/i.test(msg)) return { missing: "not there" };
    if (/Cannot connect|Is the docker daemon running|error during connect/i.test(msg)) return { missing: "unreachable" };
    if (/not installed or not runnable/.test(msg)) return { missing: "docker is not installed" };
    return { missing: msg.split("\n").slice(-1)[0]!.slice(0, 200) };
  }
  const j = JSON.parse(out.trim().split("\n").find((l) => l.startsWith("{")) ?? "{}") as { Id?: string; RepoTags?: string[] | null; RepoDigests?: string[] | null };
  if (!j.Id) return { missing: "docker image inspect gave no image ID" };
  return { id: j.Id, repoTags: j.RepoTags ?? [], repoDigests: j.RepoDigests ?? [] };
}

/** `docker save -o OUT REF` (a tag, or an image ID). @throws {DockerCommandError} */
export async function dockerSave(ref: string, out: string, opts: { env?: Record<string, string | undefined> } = {}): Promise<void> {
  await docker(["save", "-o", out, ref], `save image ${ref}`, opts.env ?? process.env);
}
