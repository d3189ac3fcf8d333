/**
 * The gateway's own disks filling up: the data dir (SQLite, keys, TUF files) and the registry's
 * blob storage. Every write there then fails with ENOSPC or SQLITE_FULL, from a device's events, a
 * registration, a publish's upload, the sightings, the signer's lease and the TUF re-signing
 * alike, and each used to answer 500 "Internal error" and print a stack trace, about one a second
 * from the sightings alone, while nothing said that the disk was the cause.
 *
 * Now the first such failure starts a "disk full" spell: the log says it once, with the free
 * space of each folder, and every write refused for it is answered 507 with `Retry-After` (a
 * device keeps its events and sends them again: fioup drops only what the gateway calls invalid)
 * and its reason, without a stack. /healthz answers 503 while it lasts. The spell ends, said once
 * with how long it lasted, when every folder has {@link ROOM_AGAIN_BYTES} (or a tenth of its file
 * system) free again, checked every
 * {@link CHECK_MS}: nobody needs to restart the gateway. Its folders' free space is on /metrics
 * (`gateway_disk_free_bytes`), to alert before a spell begins.
 *
 * On PostgreSQL a full database disk is PostgreSQL's to report; the data dir and the registry
 * storage are still this gateway's.
 *
 * @module
 */
import { fileSystemSpace } from "../lib/fs/free.ts";
import { sizeText } from "../lib/cli/bytes.ts";

/**
 * How much every folder must have free again before writes count as possible again: 64 MiB, or a
 * tenth of a smaller file system.
 */
export const ROOM_AGAIN_BYTES = 64 * 1024 * 1024;
const roomAgain = (size: number) => Math.min(ROOM_AGAIN_BYTES, size / 10);
/** How often free space is looked at during a spell. */
export const CHECK_MS = 5_000;
/** The `Retry-After` of a write refused for a full disk: freeing space takes a person, not a moment. */
export const DISK_FULL_RETRY_AFTER_S = 60;

/** A folder the gateway writes to, named as the log and /metrics name it. */
export interface WatchedDir {
  /** "data" or "registry". */
  readonly label: string;
  readonly path: string;
}

export class DiskFull {
  #since: number | undefined;
  #refused = 0;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    readonly dirs: readonly WatchedDir[],
    private readonly log: (line: string) => void,
  ) {}

  /** Since when writes have failed for want of space (ms since the epoch), or undefined. */
  get since(): number | undefined {
    return this.#since;
  }

  /**
   * Notes a write refused for want of space (`isNoSpace(err)`: ENOSPC, EDQUOT, SQLITE_FULL): the
   * first one of a spell is logged, with each folder's free space. Returns the reason for the
   * caller's answer.
   */
  note(err: unknown): string {
    this.#refused++;
    if (this.#since === undefined) {
      this.#since = Date.now();
      void this.freeSpaceText().then((free) =>
        this.log(
          `gateway: a write failed for want of disk space (${(err as Error)?.message ?? err}); ${free}: device writes, registrations and ` +
            "uploads are answered 507 with Retry-After until there is room again; free space there (gateway registry gc --untargeted removes what no target uses), " +
            "the gateway takes writes again by itself",
        ),
      );
      this.#timer = setInterval(() => void this.#check(), CHECK_MS);
      this.#timer.unref();
    }
    return "The gateway's disk is full: the operator must free space on it; send this again later";
  }

  /** Stops looking at free space (the gateway stops). */
  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** The free space of each folder, for /metrics; undefined where it cannot be told. */
  async freeSpace(): Promise<{ label: string; bytes: number | undefined; size: number | undefined }[]> {
    return Promise.all(
      this.dirs.map(async (d) => {
        const space = await fileSystemSpace(d.path);
        return { label: d.label, bytes: space?.free, size: space?.size };
      }),
    );
  }

  /** Each folder's free space in words ("data /var/lib/gateway: 0 B free, registry ..."), for the log and the dashboard. */
  async freeSpaceText(): Promise<string> {
    const free = await this.freeSpace();
    return free.map((f, i) => `${f.label} ${this.dirs[i]!.path}: ${f.bytes === undefined ? "free space unknown" : `${sizeText(f.bytes)} free`}`).join(", ");
  }

  async #check(): Promise<void> {
    if (this.#since === undefined) return;
    const free = await this.freeSpace();
    if (free.some((f) => f.bytes !== undefined && f.size !== undefined && f.bytes < roomAgain(f.size))) return;
    const seconds = Math.round((Date.now() - this.#since) / 1000);
    this.log(`gateway: there is disk space again (${await this.freeSpaceText()}), after ${seconds} s; ${this.#refused} writes were refused meanwhile`);
    this.#since = undefined;
    this.#refused = 0;
    this.stop();
  }
}
