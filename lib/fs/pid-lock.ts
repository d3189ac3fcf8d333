/**
 * One process at a time: a lock file holds the holder's PID, its start time and the boot it ran
 * in. fioup takes `<storage.path>/update.lock` (one updater at a time), `gateway serve` takes
 * `DIR/serve.lock` (one gateway per data dir; restore refuses to replace a dir a gateway holds).
 * A lock left by a dead process (power cut, SIGKILL) is taken over, so a crash never wedges
 * anything: after a reboot, or when the PID now belongs to another process (PIDs are reused,
 * and low ones at every boot), the lock is stale.
 *
 * @module
 */
import { closeSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";

export class LockedError extends Error {
  override name = "LockedError";
  constructor(
    readonly path: string,
    readonly pid: number,
  ) {
    super(`Cannot take the lock ${path}: held by running process ${pid}`);
  }
}

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

const read = (p: string) => {
  try {
    return readFileSync(p, "utf8").trim();
  } catch {
    return "";
  }
};
/** This boot's id: a lock written in another boot is stale whatever its PID. */
const bootId = () => read("/proc/sys/kernel/random/boot_id");
/** A process's start time (clock ticks since boot, /proc/PID/stat field 22): tells a reused PID apart. */
const startTime = (pid: number) => read(`/proc/${pid}/stat`).replace(/^.*\) /, "").split(" ")[19] ?? "";

/** The lock file's content: `pid start-time boot-id [place]`. */
const lockLine = (pid: number, place?: string) => `${pid} ${startTime(pid)} ${bootId()}${place ? ` ${place}` : ""}\n`;

/**
 * Whether the process a lock file names still holds it (a file of the old `pid` form: is that
 * PID alive). A lock taken with a `place` holds only there: a copy of the directory it guards
 * (a replica's copy of a data dir, with the lock file in it) is not held by the original's holder.
 */
function holds(content: string, place?: string): boolean {
  const [pidText, start, boot, at] = content.split(/\s+/);
  const pid = Number(pidText);
  if (!alive(pid)) return false;
  if (place !== undefined && at !== undefined && at !== "" && at !== place) return false;
  if (start === undefined || boot === undefined) return true;
  return boot === bootId() && start === startTime(pid);
}

export interface Lock {
  readonly path: string;
  release(): void;
}

/** The PID of the live process holding the lock at `path` (for `place`), or undefined (no lock, or a stale one). */
export function lockHolder(path: string, place?: string): number | undefined {
  const content = read(path);
  return content && holds(content, place) ? Number(content.split(/\s+/)[0]) : undefined;
}

/**
 * Takes the lock or throws. `place` (no spaces) names what the lock guards, e.g. its
 * directory's device and inode: a lock file copied elsewhere along with that directory is stale there.
 *
 * @throws {LockedError} If a live process holds it.
 */
export function acquireLock(path: string, pid = process.pid, place?: string): Lock {
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const fd = openSync(path, "wx", 0o644);
      writeSync(fd, lockLine(pid, place));
      closeSync(fd);
      return {
        path,
        release() {
          try {
            if (Number(readFileSync(path, "utf8").trim().split(/\s+/)[0]) === pid) unlinkSync(path);
          } catch {
            // already gone
          }
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    let content: string;
    try {
      content = readFileSync(path, "utf8").trim();
    } catch {
      continue; // removed meanwhile: retry
    }
    const holder = Number(content.split(/\s+/)[0]);
    if (holder === pid && holds(content, place)) {
      // Re-entrant for the same process.
      return { path, release: () => { try { unlinkSync(path); } catch {} } };
    }
    if (holder !== pid && holds(content, place)) throw new LockedError(path, holder);
    try {
      unlinkSync(path); // stale: the holder died
    } catch {
      // another process took it over first: retry
    }
  }
  throw new LockedError(path, NaN);
}

/** Runs `fn` holding the lock, releasing it however `fn` ends. */
export async function withLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const lock = acquireLock(path);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}
