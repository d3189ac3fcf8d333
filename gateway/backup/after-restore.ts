/**
 * What the first start of a restored data dir owes the devices. A backup is a moment; the gateway
 * it was made of went on signing after it (publishes, target removals, rollout steps, the timestamp
 * re-signed before it expires) until it was lost, and its devices trust those later versions. TUF
 * clients refuse a timestamp, snapshot or targets version lower than the one they trust (a
 * rollback), so a restored gateway signing on from the backup's versions is refused by every
 * device that checked in since the backup ("New timestamp version 2 is less than current
 * version 4"), until it has signed past them, which may be never.
 *
 * So `gateway restore` marks the data dir (DIR/tuf/restored-from-backup.json: the backup's time and
 * an id of this restore), and its first start re-signs targets, snapshot and timestamp at versions
 * above any the lost gateway can have signed since the backup: its versions plus one per second
 * since the backup was made, and LEAP_MARGIN more. One a second is far above what a gateway signs
 * (the timestamp is re-signed about every 18 hours by default, a publish or a rollout step signs
 * once: a busy factory signs hundreds a day, not 86,400); the margin covers the two hosts' clocks
 * disagreeing about the backup's age, and a restore started within moments of the backup. TUF
 * clients accept any jump upwards. The versions stay far below the 2^31 the PostgreSQL column holds:
 * a year-old backup adds about 31.6 million. On PostgreSQL the versions leapt from are those of the
 * database: the one that outlived the gateway (already current, so the leap is more than needed,
 * and harmless), or the one pg_restore brought back, dumped at the moment of the backup
 * (gateway/README.md): a dump older than the backup by more than the margin's day may leave devices
 * behind.
 *
 * The floor is claimed in the database under the restore's id before anything is signed, so
 * replicas started from copies of one restored data dir leap to the same floor once, and a start
 * killed half way leaps to the same floor when started again. The mark goes once the leap is signed,
 * targets.json included: with the targets key offline it stays, and a start with the key back signs
 * targets.json at the floor.
 *
 * Root is not part of it: a root rotated after the backup (its new keys, its version) cannot be
 * brought back, and devices that took it refuse the restored chain. Back up after every key
 * ceremony (docs/keys.md).
 *
 * @module
 */
import { randomUUID } from "node:crypto";
import { mkdir, readFile, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { writeFileAtomic } from "../../lib/fs/atomic-write.ts";
import type { TufRepo } from "../ota/repo.ts";
import type { Store } from "../store/types.ts";

/** The mark, under the data dir. */
export const RESTORE_MARK = join("tuf", "restored-from-backup.json");

/** Versions added beyond one a second since the backup (about 28 hours of that rate). */
export const LEAP_MARGIN = 100_000;

/**
 * The age counted at most, and for a mark whose time cannot be read: ten years of seconds (315
 * million), so even such leaps repeated stay within the 2^31 of the PostgreSQL version column.
 */
const MAX_AGE_S = 10 * 365 * 86_400;

interface RestoreMark {
  /** The backup's createdAt (its manifest). */
  backupCreatedAt: string;
  /** This restore's id: the key of its floor in the database. */
  id: string;
}

/** Marks `dir` (a data dir being restored) as restored from a backup made at `backupCreatedAt`. */
export async function markRestored(dir: string, backupCreatedAt: string): Promise<void> {
  const mark: RestoreMark = { backupCreatedAt, id: randomUUID() };
  await mkdir(dirname(join(dir, RESTORE_MARK)), { recursive: true, mode: 0o700 });
  await writeFileAtomic(join(dir, RESTORE_MARK), JSON.stringify(mark) + "\n", { mode: 0o600 });
}

async function readMark(dir: string): Promise<RestoreMark | undefined> {
  const text = await readFile(join(dir, RESTORE_MARK), "utf8").catch((e: NodeJS.ErrnoException) => (e.code === "ENOENT" ? undefined : Promise.reject(e)));
  if (text === undefined) return undefined;
  let mark: Partial<RestoreMark> = {};
  try {
    mark = JSON.parse(text) as Partial<RestoreMark>;
  } catch {
    // Garbled (a disk error): leapt as from the oldest backup below, never too little.
  }
  // A mark that names no time counts as the oldest backup (MAX_AGE_S): the largest leap, never too small.
  return { backupCreatedAt: typeof mark.backupCreatedAt === "string" ? mark.backupCreatedAt : "", id: String(mark.id ?? "unknown") };
}

/** What {@link leapAfterRestore} did, for the log: undefined when the data dir was not just restored. */
export interface Leap {
  from: Record<"targets" | "snapshot" | "timestamp", number>;
  to: Record<"targets" | "snapshot" | "timestamp", number>;
  /** Roles left behind for want of their key (targets held offline). */
  needsOfflineKey: string[];
}

/**
 * On a restored data dir's first start: claims the version floor for this restore in the database
 * and signs up to it (TufRepo.leapVersions), then removes the mark.
 */
export async function leapAfterRestore(opts: { dataDir: string; store: Pick<Store, "claimMeta">; tuf: TufRepo; now?: Date }): Promise<Leap | undefined> {
  const mark = await readMark(opts.dataDir);
  if (!mark) return undefined;
  const now = (opts.now ?? new Date()).getTime();
  const made = Date.parse(mark.backupCreatedAt);
  const ageSeconds = Number.isNaN(made) ? MAX_AGE_S : Math.min(MAX_AGE_S, Math.max(0, Math.ceil((now - made) / 1000)));
  const gap = ageSeconds + LEAP_MARGIN;
  const v = await opts.tuf.versions();
  const from = { targets: v.targets, snapshot: v.snapshot, timestamp: v.timestamp };
  const proposed = { targets: v.targets + gap, snapshot: v.snapshot + gap, timestamp: v.timestamp + gap };
  const to = JSON.parse(await opts.store.claimMeta(`restore-leap:${mark.id}`, JSON.stringify(proposed))) as Leap["to"];
  const r = await opts.tuf.leapVersions(to);
  // With the targets key offline targets.json stays behind the floor, and devices that trusted a
  // later one refuse the chain: the mark stays, and the next start (with the key back) signs
  // targets at the same floor (claimMeta gives it again; leapVersions signs only what is behind).
  if (r.needsOfflineKey.length === 0) await rm(join(opts.dataDir, RESTORE_MARK), { force: true });
  return r.refreshed.length ? { from, to, needsOfflineKey: r.needsOfflineKey } : undefined;
}
