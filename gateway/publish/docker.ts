/**
 * The two docker CLI calls publish makes for an app's Dockerfile: `docker
 * build` and `docker save`. DOCKER_HOST (and the rest of the environment) is
 * passed through, so CI points publish at whichever engine it likes.
 *
 * @module
 */

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

/** `docker build -t TAG [--platform P] DIR`. @throws {DockerCommandError} */
export async function dockerBuild(
  dir: string,
  tag: string,
  opts: { platform?: string; env?: Record<string, string | undefined>; onLine?: (line: string) => void } = {},
): Promise<void> {
  const args = ["build", "-t", tag, ...(opts.platform ? ["--platform", opts.platform] : []), dir];
  await docker(args, `build ${dir}`, opts.env ?? process.env, opts.onLine);
}

/** `docker save -o OUT TAG`. @throws {DockerCommandError} */
export async function dockerSave(tag: string, out: string, opts: { env?: Record<string, string | undefined> } = {}): Promise<void> {
  await docker(["save", "-o", out, tag], `save image ${tag}`, opts.env ?? process.env);
}
