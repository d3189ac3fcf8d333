/**
 * `--data DIR`, the flag every command that reads a gateway's data dir takes (the admin commands,
 * backup, registry gc): a folder that is not there is a typo, so it is bad usage (exit 2), said
 * the same way by every command before anything is read.
 *
 * `gateway serve` makes the data dir on its first start, so there a missing or empty folder is
 * fine; but a folder that holds other files (a home folder, a project) is a typo too, and a start
 * there would write the CA, keys and database among them. Which folder is a data dir is one rule,
 * data-dir.ts's DATA_DIR_MARKS, the rule `restore --force` and the admin commands go by.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import { UsageError } from "../../lib/cli/command.ts";
import { blockedBy, look } from "../../lib/fs/paths.ts";
import { DATA_DIR_ENTRIES, DATA_DIR_MARKS, looksLikeDataDir, SQLITE_SIDE_FILES } from "../data-dir.ts";
import { namedFew } from "../../lib/cli/few.ts";

/** @throws {UsageError} If `dir` does not exist. */
export function checkDataFlag(dir: string): void {
  if (!existsSync(dir)) throw new UsageError(`--data ${dir}: no such folder (the gateway's data dir)`);
}

/**
 * Checks the --data of a command that makes the data dir when there is none: it may be missing,
 * an empty folder or a gateway data dir, nothing else. Nothing is written.
 *
 * `ours`: paths the command was given that may lie in `dir` (a --db file, with its -wal and -shm, a --registry-dir).
 *
 * @throws {UsageError} If `dir` is a file, lies under a file, or is a folder holding files (hidden ones aside) but none of DATA_DIR_MARKS.
 * @throws {DataDirUnreadableError} If this user may not look into `dir`.
 */
export async function checkDataFlagToMake(dir: string, ours: readonly string[] = []): Promise<void> {
  // As restore and the admin commands say it: a file is the wrong --data (exit 2), not "any other error".
  const at = await look(dir).catch(() => undefined);
  if (at === "blocked") throw new UsageError(`--data ${dir}: ${await blockedBy(dir)}`);
  if (!at) return;
  if (!at.isDirectory()) throw new UsageError(`--data ${dir} is a file, not a folder: give the gateway's data dir (made on first start)`);
  // A data dir is fine; one this user may not look into (mode 0700, another user's) is said so here (DataDirUnreadableError).
  if (await looksLikeDataDir(dir)) return;
  // Hidden entries do not count: tools leave them in any folder (.DS_Store, .gitkeep, a
  // provisioning script's or the test harness's marker), and a start beside them harms nothing.
  // Nor do the gateway's own (DATA_DIR_ENTRIES): a first start killed half way left them.
  // Nor what the command was itself told to use there (`ours`: a --db file, a --registry-dir).
  const given = new Set(ours.flatMap((p) => (resolve(dirname(p)) === resolve(dir) ? [basename(p), ...SQLITE_SIDE_FILES.map((x) => basename(p) + x)] : [])));
  // Nor lost+found: a data dir at the root of a volume of its own (a new ext4 disk) holds one.
  const held = (await readdir(dir).catch(() => [])).filter((f) => !f.startsWith(".") && f !== "lost+found" && !DATA_DIR_ENTRIES.has(f) && !given.has(f));
  if (!held.length) return;
  const shown = namedFew(held.sort(), 3);
  throw new UsageError(
    `--data ${dir} is not a gateway data dir: it holds ${shown} but none of ${DATA_DIR_MARKS.join(", ")}, and the gateway would put its files among them. ` +
      "Nothing was written: give the data dir the gateway made, or a new or empty folder for a new one",
  );
}
