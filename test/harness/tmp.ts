/**
 * Shared plumbing for the test harness: temp dirs that vanish at exit, free loopback ports,
 * and `Proc`, a spawned service that is waited on until ready and stopped by PID. Every
 * starter in this folder is built on these, so no test leaks a process or a directory.
 *
 * @module
 */
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const tempDirs = new Set<string>();
const liveProcs = new Set<Proc>();
const exitHooks: (() => void)[] = [];

let exitHandlerInstalled = false;
function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  // Safety net: whatever a test forgot to stop dies with the test process.
  process.on("exit", () => {
    for (const hook of exitHooks.splice(0)) {
      try {
        hook();
      } catch {
        // best effort at exit
      }
    }
    for (const p of liveProcs) p.killNow();
    for (const dir of tempDirs) {
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        // a dir still used by a dying process: leave it to the OS
      }
    }
  });
}

/**
 * `bun test` runs no process.on("exit") handlers, so the real safety net is a watchdog: a
 * detached shell loop that waits for this process to die, then kills the processes and
 * removes the dirs listed in /tmp/ota-test-watchdog/<pid>/ (each PID checked against its
 * start time, so a reused PID is never hit).
 */
const WATCHDOG_ROOT = "/tmp/ota-test-watchdog";
const watchDir = join(WATCHDOG_ROOT, String(process.pid));
let watchdogStarted = false;
const WATCHDOG_SCRIPT = `
parent=$1; d=$2
alive() { [ -r /proc/$1/stat ] && [ "$(cut -d' ' -f3 /proc/$1/stat)" != Z ]; }
ours() { [ -r /proc/$1/stat ] && [ "$(cut -d' ' -f22 /proc/$1/stat)" = "$2" ]; }
signal() {
  left=0
  [ -f "$d/pids" ] || return 1
  while read -r p st; do
    if ours "$p" "$st" && alive "$p"; then left=1; [ -n "$1" ] && kill -$1 "$p" 2>/dev/null; fi
  done < "$d/pids"
  [ $left = 1 ]
}
while alive "$parent"; do sleep 0.5; done
if signal TERM; then
  i=0; while [ $i -lt 30 ] && signal ""; do sleep 0.1; i=$((i+1)); done
  signal KILL && sleep 0.5
fi
if [ -f "$d/dirs" ]; then while read -r dir; do rm -rf "$dir"; done < "$d/dirs"; fi
rm -rf "$d"
`;

function startTime(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? "";
  } catch {
    return "";
  }
}

function syncWatchdog(): void {
  mkdirSync(watchDir, { recursive: true });
  writeFileSync(join(watchDir, "pids"), [...liveProcs].map((p) => `${p.pid} ${p.startTime}\n`).join(""));
  writeFileSync(join(watchDir, "dirs"), [...tempDirs].map((d) => `${d}\n`).join(""));
  if (!watchdogStarted) {
    watchdogStarted = true;
    const sub = Bun.spawn({
      cmd: ["setsid", "-f", "sh", "-c", WATCHDOG_SCRIPT, "watchdog", String(process.pid), watchDir],
      stdin: "ignore",
      stdout: "ignore",
      stderr: "ignore",
    });
    sub.unref();
  }
}

/** Registers a synchronous hook run at process exit (before temp dirs are removed). */
export function onExit(hook: () => void): void {
  installExitHandler();
  exitHooks.push(hook);
}

/**
 * Creates a fresh directory under os.tmpdir() named `<prefix>XXXXXX`, removed at process exit.
 *
 * @example
 * ```ts
 * const dir = await tempDir("registry-");
 * ```
 */
export async function tempDir(prefix: string): Promise<string> {
  installExitHandler();
  const dir = mkdtempSync(join(tmpdir(), prefix.replace(/[^A-Za-z0-9._-]/g, "-")));
  tempDirs.add(dir);
  syncWatchdog();
  return dir;
}

/** Removes a temp dir now (it would be removed at exit anyway). */
export function removeTempDir(dir: string): void {
  tempDirs.delete(dir);
  syncWatchdog();
  rmSync(dir, { recursive: true, force: true });
}

/** Returns a TCP port on 127.0.0.1 that was free a moment ago (listen on 0, then close). */
export async function freePort(): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error("Cannot find a free port: no address"))));
    });
  });
}

/** True if something accepts TCP connections on host:port. */
export async function portAnswers(port: number, host = "127.0.0.1"): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    const sock = connect({ port, host });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
    sock.setTimeout(1000, () => done(false));
  });
}

/** True if a process with this PID exists (signal 0). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
  // A zombie answers signal 0 but is dead for our purposes.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Last `bytes` of a file as text ("" if it does not exist). */
export function tailFile(path: string, bytes = 4000): string {
  if (!existsSync(path)) return "";
  const size = statSync(path).size;
  const start = Math.max(0, size - bytes);
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(size - start);
    readSync(fd, buf, 0, buf.length, start);
    return buf.toString("utf8");
  } finally {
    closeSync(fd);
  }
}

/** Sends SIGTERM (or `signal`) to a PID, waits up to `graceMs`, then SIGKILL and waits for it to go. */
export async function stopPid(pid: number, graceMs = 10_000, signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  if (!pidAlive(pid)) return;
  try {
    process.kill(pid, signal);
  } catch {
    return;
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    if (!pidAlive(pid)) return;
    await sleep(50);
  }
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    return;
  }
  const killDeadline = Date.now() + 5000;
  while (Date.now() < killDeadline && pidAlive(pid)) await sleep(50);
}

export class ServiceStartError extends Error {
  override name = "ServiceStartError";
}

async function check(ready: () => Promise<boolean> | boolean): Promise<boolean> {
  try {
    return await ready();
  } catch {
    return false;
  }
}

/**
 * Polls `ready` every 50 ms until it returns true. Throws ServiceStartError naming `service`
 * and `what`, with the tail of `logFile`, if `alive()` turns false or `timeoutMs` passes.
 */
export async function waitFor(opts: {
  service: string;
  what: string;
  ready: () => Promise<boolean> | boolean;
  logFile?: string;
  alive?: () => boolean;
  timeoutMs?: number;
}): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  const tail = () => (opts.logFile ? `\n--- ${opts.logFile} ---\n${tailFile(opts.logFile, 3000)}` : "");
  for (;;) {
    if (await check(opts.ready)) return;
    if (opts.alive && !opts.alive()) {
      throw new ServiceStartError(`Cannot start ${opts.service}: it exited before ${opts.what}${tail()}`);
    }
    if (Date.now() > deadline) {
      throw new ServiceStartError(`Cannot start ${opts.service}: no ${opts.what} after ${timeoutMs} ms${tail()}`);
    }
    await sleep(50);
  }
}

/**
 * Polls `read` every 20 ms until `reached` holds for what it returned, and returns that; past
 * `timeoutMs` throws naming `what` and the last value read. For what a test cannot await (a
 * statement reaching PostgreSQL and blocking, a lease taken over, a request being held): it takes
 * as long as the machine takes, so no fixed sleep is long enough on a loaded one. `intervalMs`
 * (default 20) is the pause between reads, for a read too costly to repeat that often (a round of
 * device check-ins, a `docker` command, a request that is itself held for a while).
 */
export async function until<T>(what: string, read: () => Promise<T> | T, reached: (v: T) => boolean, timeoutMs = 5000, intervalMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (reached(v)) return v;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what} (last seen: ${JSON.stringify(v)})`);
    await sleep(intervalMs);
  }
}

export interface ProcOptions {
  /** Shown in errors: "dockerd", "postgres"... */
  name: string;
  cmd: string[];
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** stdout and stderr both go here (appended). */
  logFile: string;
  /** Signal `stop()` sends first (default SIGTERM; postgres wants SIGINT for a fast shutdown). */
  stopSignal?: NodeJS.Signals;
}

/**
 * A service process started by a test: its output goes to a log file, `waitUntil` polls a
 * readiness check with a timeout (the error quotes the log tail), `stop()` sends SIGTERM then
 * SIGKILL by PID. Live processes are killed at process exit if a test forgot them.
 */
export class Proc {
  readonly pid: number;
  readonly name: string;
  readonly logFile: string;
  /** /proc start time, so the watchdog never kills a reused PID. */
  readonly startTime: string;
  private readonly sub: ReturnType<typeof Bun.spawn>;
  private readonly stopSignal: NodeJS.Signals;
  private exitCode: number | null = null;
  private exited = false;

  private constructor(opts: ProcOptions, sub: ReturnType<typeof Bun.spawn>) {
    this.name = opts.name;
    this.logFile = opts.logFile;
    this.sub = sub;
    this.pid = sub.pid;
    this.startTime = startTime(sub.pid);
    this.stopSignal = opts.stopSignal ?? "SIGTERM";
    sub.exited.then((code) => {
      this.exited = true;
      this.exitCode = code;
      if (liveProcs.delete(this)) syncWatchdog();
    });
  }

  /** Spawns the process; it is not ready yet (call `waitUntil`). */
  static start(opts: ProcOptions): Proc {
    installExitHandler();
    const log = openSync(opts.logFile, "a");
    const cmd = opts.cmd;
    let sub: ReturnType<typeof Bun.spawn>;
    try {
      sub = Bun.spawn({
        cmd,
        cwd: opts.cwd,
        env: { ...process.env, ...opts.env } as Record<string, string>,
        stdin: "ignore",
        stdout: log,
        stderr: log,
      });
    } catch (err) {
      throw new ServiceStartError(`Cannot start ${opts.name}: ${(err as Error).message}`, { cause: err });
    } finally {
      closeSync(log);
    }
    const proc = new Proc(opts, sub);
    // Unreferenced: a forgotten service must not keep bun test alive (the watchdog kills it).
    sub.unref();
    liveProcs.add(proc);
    syncWatchdog();
    return proc;
  }

  get running(): boolean {
    return !this.exited && pidAlive(this.pid);
  }

  /** The last few KiB of the service's output, for error messages. */
  logTail(bytes = 3000): string {
    return tailFile(this.logFile, bytes);
  }

  /**
   * Polls `ready` until it returns true; throws ServiceStartError (with the log tail) if the
   * process exits or `timeoutMs` passes first.
   */
  async waitUntil(ready: () => Promise<boolean> | boolean, what: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await check(ready)) return;
      if (this.exited) {
        throw new ServiceStartError(
          `Cannot start ${this.name}: it exited with code ${this.exitCode} before ${what}\n--- ${this.logFile} ---\n${this.logTail()}`,
        );
      }
      if (Date.now() > deadline) {
        const tail = this.logTail();
        await this.stop(2000);
        throw new ServiceStartError(
          `Cannot start ${this.name}: no ${what} after ${timeoutMs} ms\n--- ${this.logFile} ---\n${tail}`,
        );
      }
      await sleep(50);
    }
  }

  /** The log's size in bytes now: pass it as `from` to look only at what is written after this point. */
  logSize(): number {
    return existsSync(this.logFile) ? statSync(this.logFile).size : 0;
  }

  /** What the log gained since byte offset `from` (a `logSize()` taken earlier). */
  logSince(from: number): string {
    return tailFile(this.logFile, Math.max(0, this.logSize() - from));
  }

  /**
   * Waits until the log contains `pattern`: in its last MiB, or, given `from` (a `logSize()`
   * taken earlier), only in what was written after that offset. The log file is opened in
   * append mode, so without `from` a line from an earlier run of the same service matches too.
   */
  async waitForLog(pattern: string | RegExp, timeoutMs = 30_000, from?: number): Promise<RegExpMatchArray> {
    let match: RegExpMatchArray | null = null;
    await this.waitUntil(
      () => {
        const text = from === undefined ? tailFile(this.logFile, 1 << 20) : this.logSince(from);
        match = typeof pattern === "string" ? (text.includes(pattern) ? [pattern] : null) : text.match(pattern);
        return match !== null;
      },
      `log line ${String(pattern)}`,
      timeoutMs,
    );
    return match!;
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  async stop(graceMs = 10_000): Promise<void> {
    if (!this.exited) await stopPid(this.pid, graceMs, this.stopSignal);
    if (liveProcs.delete(this)) syncWatchdog();
  }

  /** SIGKILL now (crash tests). */
  async kill(): Promise<void> {
    this.killNow();
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && this.running) await sleep(20);
    if (liveProcs.delete(this)) syncWatchdog();
  }

  /** Synchronous SIGKILL, used by the exit safety net. */
  killNow(): void {
    if (this.exited) return;
    try {
      process.kill(this.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }

  /** Resolves with the exit code when the process ends. */
  get exitedPromise(): Promise<number> {
    return this.sub.exited;
  }
}

/**
 * Starts a daemon that must outlive this process (the shared dockerd): `setsid -f` forks it
 * into its own session, reparented to init, so neither bun test's dangling-process cleanup nor
 * our exit kills it. Returns once the launcher has exited; find the daemon by its pidfile.
 */
export async function spawnDetached(opts: { cmd: string[]; env?: Record<string, string | undefined>; logFile: string }): Promise<void> {
  const log = openSync(opts.logFile, "a");
  try {
    const sub = Bun.spawn({
      cmd: ["setsid", "-f", ...opts.cmd],
      env: { ...process.env, ...opts.env } as Record<string, string>,
      stdin: "ignore",
      stdout: log,
      stderr: log,
    });
    const code = await sub.exited;
    if (code !== 0) throw new ServiceStartError(`Cannot start ${opts.cmd[0]}: setsid exited with code ${code}\n${tailFile(opts.logFile)}`);
  } finally {
    closeSync(log);
  }
}

/** Runs a command to completion; throws with its output if it fails. */
export async function run(
  cmd: string[],
  opts: { env?: Record<string, string | undefined>; cwd?: string; stdin?: string | Uint8Array; allowFail?: boolean } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const sub = Bun.spawn({
    cmd,
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env } as Record<string, string>,
    stdin: opts.stdin === undefined ? "ignore" : new Blob([opts.stdin]),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(sub.stdout).text(),
    new Response(sub.stderr).text(),
    sub.exited,
  ]);
  if (code !== 0 && !opts.allowFail) {
    throw new Error(`Command failed: ${cmd.join(" ")}: exit ${code}\n${stderr.slice(-3000)}${stdout.slice(-1000)}`);
  }
  return { code, stdout, stderr };
}
