/**
 * The update lock as fioup takes it: the update commands, `register` (converging the apps),
 * the daemon and the offline bundle watch. lib/fs/pid-lock says only which PID holds
 * `update.lock`; someone who typed `fioup cancel` while `fioup update` or the daemon
 * was busy needs to hear which fioup that is and what to do: wait, or stop it (its
 * update stays saved, so stopping loses nothing) and run the command again.
 *
 * @module
 */
import { basename } from "node:path";
import { acquireLock, LockedError, lockHolder, processArgs, type Lock } from "../../lib/fs/pid-lock.ts";

/**
 * Another fioup holds the update lock: who, and what to do. Exit 13 and, in `--format json`,
 * code "LockedError", both its parent's, so scripts see no change but the words.
 */
export class UpdateLockBusyError extends LockedError {
  /**
   * "`fioup update` (process 12) holds the update lock": what a loop that tries again by itself
   * (the daemon, the bundle watch) logs, without the advice to the person at the prompt.
   */
  readonly brief: string;

  constructor(path: string, pid: number, action: string) {
    super(path, pid);
    const cmd = holderCommand(pid);
    const who = holderName(pid, cmd);
    this.brief = `${who} holds the update lock`;
    const stop = cmd === "daemon" ? "stop the daemon (systemctl stop fioup, or SIGTERM)" : `stop it (Ctrl-C where it runs, or kill ${pid})`;
    this.message =
      `Cannot ${action}: ${who} holds the update lock ${path}. Wait for it to finish (\`fioup status\` shows how far it is), ` +
      `or ${stop} and run this again: the update it was running stays saved, to resume or cancel`;
  }
}

/** The fioup commands that take the update lock (register too, to converge the apps). */
const LOCKING = new Set(["update", "fetch", "install", "start", "cancel", "daemon", "register"]);

/**
 * Which fioup command process `pid` runs, from its command line; undefined when it is not one.
 * The program must be fioup (the binary, or `bun .../fioup/main.ts`): a lock left by a dead
 * fioup whose PID now belongs to `systemctl start x` is not "fioup start".
 */
function holderCommand(pid: number): string | undefined {
  const args = processArgs(pid);
  if (!args?.some((a) => basename(a) === "fioup" || a.endsWith("fioup/main.ts"))) return undefined;
  return args.find((a) => LOCKING.has(a));
}

/** "`fioup daemon` (process 12)", or "process 12" when it is not a fioup command. */
const holderName = (pid: number, cmd = holderCommand(pid)) => (cmd ? `\`fioup ${cmd}\` (process ${pid})` : `process ${pid}`);

/** The live process holding the update lock now, named as the refusals name it; undefined when none does. */
export function updateLockHolder(lockPath: string): { pid: number; command: string | null; who: string } | undefined {
  const pid = lockHolder(lockPath);
  if (pid === undefined) return undefined;
  const cmd = holderCommand(pid);
  return { pid, command: cmd ?? null, who: holderName(pid, cmd) };
}

/** Takes `<storage>/update.lock` for `action` (the verb of the message: "update", "cancel"...). */
export function takeUpdateLock(lockPath: string, action: string): Lock {
  try {
    return acquireLock(lockPath);
  } catch (e) {
    if (e instanceof LockedError && Number.isInteger(e.pid)) throw new UpdateLockBusyError(e.path, e.pid, action);
    throw e;
  }
}
