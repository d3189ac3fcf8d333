/**
 * One updater at a time: `<storage.path>/update.lock` holds the holder's PID.
 * A lock left by a dead process (power cut, SIGKILL) is taken over, so a crash
 * never wedges the device.
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
    super(`Cannot take the update lock ${path}: held by running process ${pid}`);
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

export interface Lock {
  readonly path: string;
  release(): void;
}

/**
 * Takes the lock or throws.
 *
 * @throws {LockedError} If a live process holds it.
 */
export function acquireLock(path: string, pid = process.pid): Lock {
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const fd = openSync(path, "wx", 0o644);
      writeSync(fd, `${pid}\n`);
      closeSync(fd);
      return {
        path,
        release() {
          try {
            if (Number(readFileSync(path, "utf8").trim()) === pid) unlinkSync(path);
          } catch {
            // already gone
          }
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    let holder = NaN;
    try {
      holder = Number(readFileSync(path, "utf8").trim());
    } catch {
      continue; // removed meanwhile: retry
    }
    if (holder === pid) {
      // Re-entrant for the same process (e.g. daemon after a crash with the same PID).
      return { path, release: () => { try { unlinkSync(path); } catch {} } };
    }
    if (alive(holder)) throw new LockedError(path, holder);
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
