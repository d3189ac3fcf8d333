/**
 * Work folders a process owns, and the ones a killed process left. A command that fills a
 * scratch or work folder (publish's saved images, export's rebuilt layers, preload's image tree,
 * backup's database snapshot, restore's decrypted data dir) removes it when it ends, and in its
 * Ctrl-C/SIGTERM handler (lib/cli/interrupt.ts); a SIGKILL or a power cut runs neither, so the
 * folder holds a lock file naming its owner (pid-lock.ts: PID, start time, boot), and the next
 * run of any command using the same prefix in the same parent removes the folders whose owner is
 * gone. One rule for all of them, so none grows a `/tmp` or a data dir run after run.
 *
 * @module
 */
import { lstat, mkdtemp, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { acquireLock, lockFilePid, lockHolder } from "./pid-lock.ts";

/**
 * Makes `parent/PREFIXxxxxxx` (mkdtemp) holding `lock`, which names this process until the
 * folder is removed. Returns its path.
 *
 * @example
 * ```ts
 * const tmp = await makeOwnedFolder(tmpdir(), "gateway-publish-", ".owner.lock");
 * ```
 */
export async function makeOwnedFolder(parent: string, prefix: string, lock: string): Promise<string> {
  const dir = await mkdtemp(join(parent, prefix));
  try {
    acquireLock(join(dir, lock));
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  return dir;
}

/** A folder a killed owner left: removed, or not (a tool it ran may still write there). */
export interface DeadFolder {
  path: string;
  /** The owner the lock file named, if it named one. */
  pid?: number;
  removed: boolean;
}

/**
 * Removes the folders named PREFIX* in `parent` whose `lock` file names a process that is gone.
 * A folder with no lock file is the moment between its mkdtemp and its lock, or made by an older
 * release: removed once `locklessAfterMs` old if given, else left. A live owner's is never
 * touched. Best effort: what cannot be removed is returned with `removed: false`.
 */
export async function removeDeadFolders(parent: string, prefix: string, lock: string, opts: { locklessAfterMs?: number } = {}): Promise<DeadFolder[]> {
  const out: DeadFolder[] = [];
  for (const name of await readdir(parent).catch(() => [] as string[])) {
    if (!name.startsWith(prefix)) continue;
    const path = join(parent, name);
    const st = await lstat(path).catch(() => undefined);
    if (!st?.isDirectory()) continue;
    const lockFile = join(path, lock);
    if (lockHolder(lockFile) !== undefined) continue; // its owner runs
    const pid = lockFilePid(lockFile);
    const dead = pid !== undefined || (opts.locklessAfterMs !== undefined && Date.now() - st.mtimeMs >= opts.locklessAfterMs);
    if (!dead) continue;
    const removed = await rm(path, { recursive: true, force: true, maxRetries: 3 }).then(
      () => true,
      () => false,
    );
    out.push({ path, ...(pid !== undefined ? { pid } : {}), removed });
  }
  return out;
}
