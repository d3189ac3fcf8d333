/**
 * One process at a time: a lock file holds the holder's PID, its start time and the boot it ran
 * in. fioup takes `<storage.path>/update.lock` (one updater at a time) and `daemon.lock` (one
 * daemon, for its whole run), `gateway serve` takes
 * `DIR/serve.lock` (one gateway per data dir; restore refuses to replace a dir a gateway holds).
 * A lock left by a dead process (power cut, SIGKILL) is taken over, so a crash never wedges
 * anything: after a reboot, or when the PID now belongs to another process (PIDs are reused,
 * and low ones at every boot), the lock is stale.
 *
 * Two processes racing for it never both win. The lock file appears with its line already in
 * it (written under a private name, then hard-linked into place, which fails if the file
 * exists), so nobody reads it empty and takes it for stale. A stale one is taken over by
 * renaming it aside and checking that what moved is the file judged stale: if another process
 * took it over first, its fresh lock is put back, not deleted. (Three or more processes taking
 * over one stale lock at the same moment leave a narrow window: a third may make its lock while
 * a fresh one is aside. lib/fs/pid-lock.test.ts races two, which is what a device runs.)
 *
 * @module
 */
import { closeSync, linkSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { fsWhy, isNoSpace } from "./why.ts";

export class LockedError extends Error {
  override name = "LockedError";
  constructor(
    readonly path: string,
    readonly pid: number,
  ) {
    super(`Cannot take the lock ${path}: held by running process ${pid}`);
  }
}

/**
 * The lock file could not be made or written (a full disk, a read-only one, no permission): said
 * in words with what to do. The errno stays as `code` (and the cause), so whatever sorts errors
 * by it (lib/fs/why.ts: a full disk's exit code, a refused write) sorts this one alike.
 */
export class LockWriteError extends Error {
  override name = "LockWriteError";
  readonly code: string | undefined;
  constructor(
    readonly path: string,
    cause: unknown,
  ) {
    super(`Cannot take the lock ${path}: ${fsWhy(cause)}${isNoSpace(cause) ? `; free space on its file system (df ${dirname(path)}), then run the command again` : ""}`, { cause });
    this.code = (cause as NodeJS.ErrnoException)?.code;
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

/** Clock ticks per second of /proc's times (USER_HZ): 100 on every Linux. */
const USER_HZ = 100;

/**
 * When process `pid` started, in ms since the epoch by today's clock (the boot time /proc/stat
 * gives, in whole seconds, plus the start time): undefined if it does not run or /proc cannot say.
 */
export function processStartMs(pid: number): number | undefined {
  const btime = Number(/^btime ([0-9]+)$/m.exec(read("/proc/stat"))?.[1]);
  const ticks = Number(startTime(pid) || NaN);
  if (!alive(pid) || !Number.isFinite(btime) || !Number.isFinite(ticks)) return undefined;
  return btime * 1000 + (ticks * 1000) / USER_HZ;
}

/**
 * Which process `pid` is, in terms no clock step changes: this boot's id and the process's start
 * in ticks since boot. Undefined if it does not run or /proc cannot say. For a record that must
 * tell its live writer from a dead one (a reused PID, another boot) across a change of the wall
 * clock, which moves {@link processStartMs} (a device without a real-time clock is set by NTP
 * after it started).
 */
export function processStamp(pid: number): string | undefined {
  const ticks = startTime(pid);
  return alive(pid) && ticks ? `${bootId()}:${ticks}` : undefined;
}

/** The arguments process `pid` was started with (its program first), or undefined if /proc cannot say. */
export function processArgs(pid: number): string[] | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const line = read(`/proc/${pid}/cmdline`);
  return line ? line.split("\0").filter((a) => a !== "") : undefined;
}

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

/** The PID the lock file at `path` names, whether that process still holds it or not (undefined: no lock file). */
export function lockFilePid(path: string): number | undefined {
  const pid = Number(read(path).split(/\s+/)[0]);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
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
 * @throws {LockWriteError} If the lock file cannot be made or written (nothing is left behind).
 */
export function acquireLock(path: string, pid = process.pid, place?: string): Lock {
  const line = lockLine(pid, place);
  for (let attempt = 0; attempt < 5; attempt++) {
    if (createWith(path, line)) {
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
    removeStale(path, content);
  }
  throw new LockedError(path, NaN);
}

/** Private names beside the lock, for this process: unique among the processes racing for it. */
const aside = (path: string, what: string) => `${path}.${what}.${process.pid}`;

/**
 * Makes the lock file at `path` holding `line`, or returns false if one exists. The file appears
 * whole (a hard link to a private copy); on a file system without hard links (FAT) it is made
 * with O_EXCL and then written, as before, with the short empty moment that leaves.
 *
 * @throws {LockWriteError} If it cannot be made or written (nothing is left behind).
 */
function createWith(path: string, line: string): boolean {
  const tmp = aside(path, "new");
  try {
    writeWhole(tmp, "w", line);
    try {
      linkSync(tmp, path);
      return true;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "EEXIST") return false;
      if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EOPNOTSUPP" && code !== "ENOSYS") throw new LockWriteError(path, e);
    }
  } catch (e) {
    if (e instanceof LockWriteError) throw e;
    throw new LockWriteError(path, e);
  } finally {
    try {
      unlinkSync(tmp);
    } catch {}
  }
  try {
    writeWhole(path, "wx", line);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw new LockWriteError(path, e);
  }
}

/** Creates `file` (open `flag`) holding `text`; a file it made but could not write is removed. */
function writeWhole(file: string, flag: "w" | "wx", text: string): void {
  const fd = openSync(file, flag, 0o644);
  try {
    writeSync(fd, text);
  } catch (e) {
    closeSync(fd);
    try {
      unlinkSync(file);
    } catch {}
    throw e;
  }
  closeSync(fd);
}

/**
 * Removes the lock file at `path`, judged stale from `content`, unless another process replaced it
 * meanwhile: it is renamed aside first, and a fresh lock that moved instead is linked back.
 */
function removeStale(path: string, content: string): void {
  const grave = aside(path, "stale");
  try {
    renameSync(path, grave);
  } catch {
    return; // gone already: the caller tries again
  }
  try {
    if (read(grave) !== content) linkSync(grave, path); // someone's fresh lock: back in place
  } catch {
    // a third process made a new lock meanwhile: it holds
  } finally {
    try {
      unlinkSync(grave);
    } catch {}
  }
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
