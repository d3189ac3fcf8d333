/**
 * Update locks: any file in `<storage.path>/update-locks/` whose name does not
 * start with "." holds installs back (fioup/update/hold.ts). Apps bind-mount the
 * directory and drop a file while they must not be interrupted; `fioup lock` and
 * `fioup unlock` do the same by hand. The first line of a file is its reason.
 *
 * @module
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { UsageError } from "../../lib/cli/command.ts";
import { namedFew } from "../../lib/cli/few.ts";
import { writeFileAtomicSync } from "../../lib/fs/atomic-write.ts";
import type { Config } from "../config.ts";

/** The directory of update locks, under the storage path. */
export const UPDATE_LOCKS_DIR = "update-locks";

/** `fioup unlock --name N` with no lock N while other locks still hold installs back (a mistyped name, most likely). */
export class UpdateLockNotHeldError extends Error {
  override name = "UpdateLockNotHeldError";
  constructor(lock: string, held: readonly string[]) {
    super(`No update lock "${lock}"; installs are still held by ${namedFew(held.map((n) => `"${n}"`), 5)} (give --name with one of these, or --all)`);
  }
}

export const updateLocksDir = (cfg: Pick<Config, "storagePath">): string => join(cfg.storagePath, UPDATE_LOCKS_DIR);

export interface UpdateLockInfo {
  name: string;
  /** The file's first line, if any. */
  reason?: string;
  /** When the file was last written. */
  since: string;
}

/** The update locks held now, by name. */
export function listUpdateLocks(dir: string): UpdateLockInfo[] {
  if (!existsSync(dir)) return [];
  const out: UpdateLockInfo[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (name.startsWith(".")) continue;
    try {
      const st = statSync(join(dir, name));
      const reason = st.isFile() ? readFileSync(join(dir, name), "utf8").split("\n")[0]!.trim().slice(0, 256) : "";
      out.push({ name, ...(reason ? { reason } : {}), since: st.mtime.toISOString() });
    } catch {
      // removed while we looked: not held
    }
  }
  return out;
}

/** What an update lock may be called: a file name of 1-64 of A-Z a-z 0-9 . _ - not starting with ".". */
export const LOCK_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/;

/** `fioup lock` and `fioup unlock` refuse a bad --name with the same rule. */
export function checkLockName(name: string): void {
  if (!LOCK_NAME.test(name)) throw new UsageError(`invalid lock name "${name}": use 1-64 of A-Z a-z 0-9 . _ - not starting with "."`);
}

/** Takes (or renews) update lock `name` with an optional reason; returns its path. Written atomically. */
export function writeUpdateLock(dir: string, name: string, reason = ""): string {
  const path = join(dir, name);
  writeFileAtomicSync(path, reason ? `${reason.replace(/\n/g, " ")}\n` : "");
  return path;
}

/** Removes update lock `name`; false when it was not held. */
export function removeUpdateLock(dir: string, name: string): boolean {
  try {
    rmSync(join(dir, name), { recursive: true });
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw e;
  }
}
