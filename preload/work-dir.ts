/**
 * The work folder preload fills beside --out: the image's tree, the blob cache when no --cache
 * is given, and the tar or ext4 file before it is put at --out. Everything unfinished is in that
 * one folder (and --out's `.partial`), so a run that ends any way leaves nothing half written
 * that looks like an image, and --out can be given again at once:
 * - the run's end (done or failed) removes it ({@link WorkDir.close});
 * - Ctrl-C or SIGTERM ends the process without running `finally` blocks, so the signal's handler
 *   removes it the same way (synchronously: nothing runs after it);
 * - a preload killed outright (SIGKILL, a power cut) ran nothing: its folder holds an owner file
 *   with its pid, and the next preload beside the same --out removes it once that pid is gone.
 * The folder is made before the gateway is asked: making it is the one test that tells whether
 * files can be made beside --out at all (root passes every permission check, yet /proc or /sys
 * takes no new file), so such an --out is bad usage at once, not an errno after the download.
 * The folders above --out it had to make go again when the run ends without an image.
 * And when the disk fills, the message names what preload writes where ({@link noSpaceError}).
 *
 * @module
 */
import { readdirSync, rmSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { UsageError } from "../lib/cli/command.ts";
import { exitOnSignal } from "../lib/cli/interrupt.ts";
import { fsWhy, isNoSpace } from "../lib/fs/why.ts";
import { acquireLock } from "../lib/fs/pid-lock.ts";
import { removeDeadFolders } from "../lib/fs/owned-folder.ts";
import { removeMadeFolders } from "../lib/fs/paths.ts";
import { ImageNoSpaceError, OutputError, partialPath, type OutputFormat } from "./output.ts";

/** The work folder beside --out, and the file in it naming the preload that owns it. */
const WORK_PREFIX = ".preload-";
const OWNER_FILE = "owner.lock";

/** This run's work folder; until {@link close}, a SIGINT or SIGTERM removes it and exits. */
export interface WorkDir {
  readonly path: string;
  /**
   * Says that the folder --out is being emptied and filled (format dir, --out there already): a
   * signal from now on leaves it empty, and says so (`held`: it held an earlier image), where it
   * would otherwise say --out is as it was.
   */
  replacingOut(held: boolean): void;
  /** Ends the signal handling and removes the work folder and --out's `.partial`. */
  close(): Promise<void>;
}

/**
 * Makes the work folder beside `outPath` (its folder made first), after removing the ones earlier
 * preloads were killed in, each said through `info`.
 *
 * @param o.onStop Run first when a signal stops the run (clearing a progress line).
 */
export async function openWorkDir(outPath: string, o: { info: (line: string) => void; onStop?: () => void }): Promise<WorkDir> {
  const folder = dirname(outPath);
  const made = await mkdir(folder, { recursive: true }).catch((e: unknown) => {
    throw cannotMake(e, folder, outPath);
  });
  // The folders above --out this run made: removed again (when still empty) if no image comes.
  const removeMade = () => removeMadeFolders(made, folder);
  for (const line of await removeStaleWork(folder)) o.info(line);
  const path = await mkdtemp(join(folder, WORK_PREFIX)).catch((e: unknown) => {
    removeMade();
    throw cannotMake(e, folder, outPath);
  });
  acquireLock(join(path, OWNER_FILE));
  let replacing: { held: boolean } | undefined;
  const releaseSignals = exitOnSignal("preload", () => {
    o.onStop?.();
    rmSync(path, { recursive: true, force: true });
    rmSync(partialPath(outPath), { force: true });
    if (replacing) {
      // Never a half image that looks like one (as output.ts leaves it on an error).
      for (const name of readdirSync(outPath)) rmSync(join(outPath, name), { recursive: true, force: true });
      return `removed the unfinished image; ${outPath} is left empty${replacing.held ? ": the earlier image it held was removed before the new one was copied in" : ""}`;
    }
    removeMade();
    return `removed the unfinished image, ${outPath} is as it was`;
  });
  return {
    path,
    replacingOut(held) {
      replacing = { held };
    },
    async close() {
      releaseSignals();
      await rm(path, { recursive: true, force: true });
      await rm(partialPath(outPath), { force: true });
      removeMade();
    },
  };
}

/**
 * A folder that cannot be made beside --out: bad usage naming --out (a file system that takes no
 * new files, no permission), unless the disk is full, which stays an error of its own ({@link noSpaceError}).
 */
function cannotMake(err: unknown, folder: string, outPath: string): unknown {
  if (isNoSpace(err) || typeof (err as NodeJS.ErrnoException)?.code !== "string") return err;
  const code = (err as NodeJS.ErrnoException).code!;
  const why = code === "ENOENT" ? `its file system takes no new files (${code})` : `${fsWhy(err)} (${code})`;
  return new UsageError(`Cannot write --out ${outPath}: preload cannot make its work folder in ${folder}: ${why}; give an --out in a folder of a file system for files`);
}

/**
 * Removes the work folders beside --out whose preload is gone (SIGKILL, a power cut: nothing ran
 * to remove them), each said in a line: they hold a whole unfinished image. A folder whose owner
 * runs (another preload into the same folder) is left alone, as is one without an owner file.
 */
async function removeStaleWork(dir: string): Promise<string[]> {
  return (await removeDeadFolders(dir, WORK_PREFIX, OWNER_FILE)).map(({ path, pid, removed }) =>
    removed
      ? `removed ${path}: the unfinished work of an earlier preload (pid ${pid}) that was killed`
      : `warning: cannot remove ${path}, the unfinished work of an earlier preload (pid ${pid}) that was killed: a tool it ran may still write there (remove it once that ends)`,
  );
}

/**
 * A full file system while the image was made, said as what preload writes where (the tree, the
 * cache unless --cache puts it elsewhere, the tar or ext4 file, all beside --out) and what to do;
 * undefined for any other error.
 */
export function noSpaceError(err: unknown, o: { outPath: string; cache?: string; format: OutputFormat }): OutputError | undefined {
  if (!isNoSpace(err) && !(err instanceof ImageNoSpaceError)) return undefined;
  const { outPath, cache, format } = o;
  const sizes = err instanceof ImageNoSpaceError ? ` (${err.detail})` : "";
  const beside = [
    "the image's tree",
    ...(cache ? [] : ["the blob cache (--cache DIR puts it elsewhere)"]),
    ...(format === "dir" ? [] : [`the ${format} file`]),
  ];
  // The file system that is full: the one beside --out, unless the error names another (a mounted --out, the --cache).
  const where = (err instanceof ImageNoSpaceError && err.o.where) || dirname(outPath);
  const left = (err instanceof ImageNoSpaceError && err.o.left) || `the unfinished image was removed, ${outPath} is as it was`;
  return new OutputError(
    `No space left to write the image at ${outPath}${cache ? ` or the cache ${cache}` : ""}${sizes}: preload writes ${beside.join(", ")} in ${dirname(outPath)}${format === "dir" && where === outPath ? `, then the image into ${outPath}` : ""}; free some space in ${where} or give an --out on a larger file system (${left})`,
  );
}
