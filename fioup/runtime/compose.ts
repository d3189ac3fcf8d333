/**
 * Runs `docker compose` (v2, what devices in the field have) or, when that is
 * missing, `docker-compose` (v1, all Debian bookworm ships, or a compose v2 binary installed
 * under that name: {@link composeMajor} asks which) against an installed
 * app dir, always with the `.fioup/images.yml` override so services use the
 * local tags loaded from the store and compose never has to pull.
 *
 * A compose command outlives a fioup killed with SIGKILL (it is not fioup's
 * thread, so no parent-death signal reaches it): each one is listed in a PID
 * file while it runs, and the next fioup kills what is left there.
 *
 * @module
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename } from "node:path";
import { childEnv } from "../child-env.ts";
import { projectName } from "../../lib/compose/app-format.ts";

/** Neither `docker compose` nor `docker-compose` runs on this machine. */
export class ComposeNotFoundError extends Error {
  override name = "ComposeNotFoundError";
  constructor() {
    super("Cannot run compose: neither `docker compose` (v2) nor `docker-compose` (v1) is installed");
  }
}

/** A compose command exited non-zero (or timed out); the message carries its stderr tail. */
export class ComposeError extends Error {
  override name = "ComposeError";
  constructor(
    readonly app: string,
    readonly action: string,
    readonly output: string,
    why: string,
  ) {
    super(`Cannot ${action} app "${app}": ${why}${output ? `\n${output}` : ""}`);
  }
}

/** The override file inside an app dir that maps each service to its local tag. */
export const OVERRIDE_FILE = ".fioup/images.yml";

/** The compose project name for an app: its one home is lib/compose/app-format.ts (publish checks it too). */
export { projectName };

async function runs(cmd: string[], env: Record<string, string>): Promise<boolean> {
  try {
    const p = Bun.spawn({ cmd, env, stdin: "ignore", stdout: "ignore", stderr: "ignore" });
    return (await p.exited) === 0;
  } catch {
    return false; // executable not found
  }
}

/**
 * Finds the compose command: `docker compose` if the plugin answers, else
 * `docker-compose` if it is on the PATH. v1 is only looked up, not run: `docker-compose
 * version` starts a Python interpreter (0.8 s on a fast x64 machine, seconds on a small
 * device) on every fioup run that starts or stops apps; a v1 that is there but broken fails
 * at its first real command, with its own error. @throws {ComposeNotFoundError}
 */
export async function findCompose(env: Record<string, string> = childEnv()): Promise<string[]> {
  if (await runs(["docker", "compose", "version"], env)) return ["docker", "compose"];
  if (Bun.which("docker-compose", env.PATH === undefined ? {} : { PATH: env.PATH })) return ["docker-compose"];
  throw new ComposeNotFoundError();
}

export interface ComposeRunOptions {
  /** Kill the command after this long. Default 10 minutes. */
  timeoutMs?: number;
}

/** `/proc/<pid>/stat` start time (field 22): with the PID, names one process for its whole life. */
function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/**
 * Kills the compose commands a killed fioup left running (listed in `pidFile` as
 * `<pid> <start time> <fioup pid>` lines; a reused PID never matches its start time, and
 * a command whose fioup still runs is left alone), then empties it.
 * Returns how many were killed.
 */
export function killLeftoverCompose(pidFile: string): number {
  let text = "";
  try {
    text = readFileSync(pidFile, "utf8");
  } catch {
    return 0;
  }
  let killed = 0;
  for (const line of text.split("\n")) {
    const [pid, start, owner] = line.trim().split(" ");
    const n = Number(pid);
    if (!(n > 0) || !start || startTime(n) !== start) continue;
    if (Number(owner) > 0 && Number(owner) !== process.pid && startTime(Number(owner)) !== undefined) continue; // its fioup still runs
    try {
      process.kill(n, "SIGKILL");
      killed++;
    } catch {
      // already gone
    }
  }
  rmSync(pidFile, { force: true });
  return killed;
}

/**
 * The environment a compose command runs with ({@link childEnv}, bound to the engine): what
 * compose interpolates the app's `.env` against, so the runtime reads that file with it too.
 */
export function composeEnv(dockerHost: string): Record<string, string> {
  return childEnv({
    DOCKER_HOST: dockerHost,
    // Never prompt, never colour: output goes into error messages.
    COMPOSE_INTERACTIVE_NO_CLI: "1",
    NO_COLOR: "1",
  });
}

/**
 * The major version in what `docker-compose version` prints: `docker-compose version 1.29.2, build
 * unknown` (v1), `Docker Compose version v2.24.6` (v2 and later). Undefined when it says neither.
 */
export function composeVersionMajor(output: string): number | undefined {
  const m = /^\s*docker[- ]compose version:? v?(\d+)\.\d+/im.exec(output);
  return m ? Number(m[1]) : undefined;
}

/** Each command's version, asked once per process (by command and PATH). */
const majors = new Map<string, Promise<1 | 2 | undefined>>();

/**
 * The compose version a command (findCompose's) runs, 2 standing for v2 and later: the `docker
 * compose` plugin is always v2 or later; a `docker-compose` is whatever it says it is, since a
 * compose v2 binary is also installed under that name, without the docker CLI, and the two read
 * an app's `.env` differently (_compose-facts.ts). Asked once per process and only when needed: v1
 * starts a Python interpreter to answer. Undefined when the command does not say (it fails, hangs
 * past 30 s or prints something else).
 */
export function composeMajor(command: string[], env: Record<string, string> = childEnv()): Promise<1 | 2 | undefined> {
  if (command.length > 1) return Promise.resolve(2);
  const key = `${command.join(" ")}\0${env.PATH ?? ""}`;
  let found = majors.get(key);
  if (!found) {
    found = (async () => {
      try {
        const p = Bun.spawn({ cmd: [...command, "version"], env, stdin: "ignore", stdout: "pipe", stderr: "ignore", timeout: 30_000, killSignal: "SIGKILL" });
        const [out, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
        const major = code === 0 ? composeVersionMajor(out) : undefined;
        return major === undefined ? undefined : major >= 2 ? 2 : 1;
      } catch {
        return undefined; // not there (any more)
      }
    })();
    majors.set(key, found);
    // Not knowing is not kept: the next need asks again (compose may be mended meanwhile).
    void found.then((m) => m === undefined && majors.delete(key));
  }
  return found;
}

/**
 * Whether an app's `.env` is read the v1 way for `command` whose version is `major`
 * ({@link composeMajor}): v1 said so, or a command named `docker-compose` that gave no usable
 * answer (failed, hung past 30 s under load, printed something else). What answers under that
 * name without saying is more likely the v1 Python tool than a v2 binary, and reading a v1's
 * `.env` the v2 way enables profiles v1 never starts (`COMPOSE_PROFILES=*`), so the update waits
 * for services that never come and rolls back. The `docker compose` plugin is v2 or later.
 *
 * @example
 * ```ts
 * dotEnvAsV1(["docker-compose"], undefined); // true
 * dotEnvAsV1(["docker", "compose"], undefined); // false
 * ```
 */
export function dotEnvAsV1(command: string[], major: 1 | 2 | undefined): boolean {
  if (major !== undefined) return major === 1;
  return command.length === 1 && basename(command[0]!) === "docker-compose";
}

/** One compose binary bound to one engine. */
export class Compose {
  private readonly live = new Map<number, string>();

  constructor(
    /** `["docker", "compose"]` or `["docker-compose"]`. */
    readonly command: string[],
    /** `unix://...` of the engine. */
    readonly dockerHost: string,
    /**
     * Where running compose commands are listed, so the next fioup can kill those a killed
     * fioup left behind ({@link killLeftoverCompose}); none when undefined.
     */
    readonly pidFile?: string,
  ) {}

  private track(pid: number, alive: boolean): void {
    if (!this.pidFile) return;
    if (alive) this.live.set(pid, startTime(pid) ?? "");
    else this.live.delete(pid);
    try {
      writeFileSync(this.pidFile, [...this.live].map(([p, st]) => `${p} ${st} ${process.pid}\n`).join(""));
    } catch {
      // best effort: the list only helps clean up after a crash
    }
  }

  /** Version 1, or 2 for v2 and later, as the command says: {@link composeMajor}. */
  major(): Promise<1 | 2 | undefined> {
    return composeMajor(this.command);
  }

  private async run(app: string, dir: string, composeFile: string, action: string, args: string[], opts: ComposeRunOptions = {}): Promise<string> {
    const cmd = [...this.command, "-p", projectName(app), "-f", composeFile, "-f", OVERRIDE_FILE, ...args];
    const env = composeEnv(this.dockerHost);
    let proc: ReturnType<typeof Bun.spawn>;
    try {
      proc = Bun.spawn({ cmd, cwd: dir, env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    } catch (cause) {
      throw new ComposeError(app, action, "", `cannot run ${this.command.join(" ")}: ${(cause as Error).message}`);
    }
    this.track(proc.pid, true);
    void proc.exited.then(() => this.track(proc.pid, false));
    const timeoutMs = opts.timeoutMs ?? 10 * 60_000;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      proc.kill("SIGKILL");
    }, timeoutMs);
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout as ReadableStream).text(),
      new Response(proc.stderr as ReadableStream).text(),
      proc.exited,
    ]).finally(() => clearTimeout(timer));
    const output = `${stderr}${stdout}`.trim();
    const tail = output.split("\n").slice(-15).join("\n");
    if (timedOut) throw new ComposeError(app, action, tail, `${this.command.join(" ")} ${args[0]} took longer than ${timeoutMs} ms`);
    if (code !== 0) throw new ComposeError(app, action, tail, `${this.command.join(" ")} ${args[0]} exited with code ${code}`);
    return output;
  }

  /** `up -d --remove-orphans` (images come from the override's local tags, already loaded). @throws {ComposeError} */
  up(app: string, dir: string, composeFile: string, opts?: ComposeRunOptions): Promise<string> {
    // No `--pull never`: compose v2 before 2.7 lacks it, and the default policy ("missing") never pulls a present tag.
    return this.run(app, dir, composeFile, "start", ["up", "-d", "--remove-orphans"], opts);
  }

  /** `stop`. @throws {ComposeError} */
  stop(app: string, dir: string, composeFile: string, opts?: ComposeRunOptions): Promise<string> {
    return this.run(app, dir, composeFile, "stop", ["stop"], opts);
  }

  /** `down --remove-orphans` (containers and networks; named volumes are kept). @throws {ComposeError} */
  down(app: string, dir: string, composeFile: string, opts?: ComposeRunOptions): Promise<string> {
    return this.run(app, dir, composeFile, "remove", ["down", "--remove-orphans"], opts);
  }
}
