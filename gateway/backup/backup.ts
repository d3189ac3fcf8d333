/**
 * Backup and restore of a gateway data dir. Losing the data dir loses the factory CA and the
 * TUF keys, and with them every device's trust: a fleet that can no longer be updated. A backup
 * is one sealed file (seal.ts) holding a tar of the data dir, with the SQLite database taken as
 * a consistent snapshot (`VACUUM INTO`, safe while the gateway runs and devices post events) and
 * the registry's blobs only when asked (they can be large, and the factory CI can push them
 * again). It is written to a temp file and renamed into place only once complete and durable, so
 * an interrupted backup never replaces the last good one. Restore unpacks into a temp dir beside
 * the target and renames it into place, so it too is all or nothing.
 *
 * Both name the user's paths in their errors, never their temp names, and check them before
 * writing anything. `restore --force` replaces only a gateway data dir (or an empty folder), one
 * no gateway serves, and keeps the old one beside it: a --force aimed at the wrong folder, or at
 * the data dir a good backup was not made of, must lose nothing.
 *
 * On PostgreSQL the database is not in the file: it is backed up with the database's own tools
 * (pg_dump or pg_basebackup), and this backup holds the rest (CA, TUF keys, secrets). So a backup
 * there needs the --db, and checks that it is this data dir's database, as `serve` does, before
 * writing anything: the file is worth only as much as the dump it is restored with. The signed
 * TUF metadata lives in the database on either backend, so on PostgreSQL it is in the dump, not here.
 *
 * @module
 */
import { Database } from "bun:sqlite";
import { createReadStream, readdirSync, rmSync, statSync } from "node:fs";
import { cp, lstat, mkdir, mkdtemp, open, readdir, readFile, realpath, rename, rm, rmdir, stat } from "node:fs/promises";
import { basename, dirname, join, normalize, posix, relative, sep } from "node:path";
import { tmpdir } from "node:os";
import { Readable } from "node:stream";
import tar from "tar-stream";
import { sizeText } from "../../lib/cli/bytes.ts";
import { UsageError } from "../../lib/cli/command.ts";
import { exitOnSignal } from "../../lib/cli/interrupt.ts";
import { syncDir, tempFileOf, writeFileAtomic } from "../../lib/fs/atomic-write.ts";
import { fsWhy, isNoSpace } from "../../lib/fs/why.ts";
import { exchangePaths } from "../../lib/fs/exchange.ts";
import { blockedBy, look, removeMadeFolders, whyCannotWrite } from "../../lib/fs/paths.ts";
import { acquireLock, lockHolder, processStartMs } from "../../lib/fs/pid-lock.ts";
import { makeOwnedFolder, removeDeadFolders } from "../../lib/fs/owned-folder.ts";
import { freeBytes } from "../../lib/fs/free.ts";
import { DATA_DIR_MARKS, DataDirInUseError, SQLITE_DB_FILE, lockDataDir, looksLikeDataDir, readFactoryName, recordDatabaseKind, servedDatabaseKind, servingPid } from "../data-dir.ts";
import { CA_FINGERPRINT_META, StoreOpenError, dbKind, dbKindProblem, peekDatabaseMeta } from "../store/open.ts";
import { shownUrl } from "../../lib/net/shown-url.ts";
import { caFingerprint } from "../../lib/tls/pin.ts";
import { ADOPTED_ROOT_FILE } from "../ota/key-store.ts";
import { REGISTRY_SCRATCH_FOLDERS } from "../registry/storage.ts";
import { markRestored } from "./after-restore.ts";
import { seal, startsAsBackup, unseal, type OpenSecret, type SealSecret } from "./seal.ts";
import { namedFew } from "../../lib/cli/few.ts";

export const BACKUP_FORMAT = 1;
const MANIFEST = "backup.json";

export interface BackupManifest {
  format: number;
  createdAt: string;
  factory: string;
  /** "sqlite": the database is inside; "postgres": it is not (pg_dump it alongside). */
  database: "sqlite" | "postgres";
  registry: boolean;
  files: number;
  bytes: number;
}

export interface BackupOptions {
  dataDir: string;
  out: string;
  secret: SealSecret;
  /** `--db` as given to `gateway serve`: a postgres:// URL, or the SQLite file (default DIR/gateway.db). */
  db?: string;
  /** Include the embedded registry's blobs and manifests. */
  withRegistry?: boolean;
  /** Where the registry is when not in DIR/registry (`serve --registry-dir`, shared by replicas). */
  registryDir?: string;
  onProgress?: (files: number, bytes: number) => void;
  /** Called first when Ctrl-C or SIGTERM stops the backup, before it says what it left (the command clears its progress line). */
  onInterrupt?: () => void;
}

export class BackupError extends Error {
  override name = "BackupError";
}

/**
 * Checks, before anything is written, that `db` (a PostgreSQL --db) is the database `dataDir` is
 * served with: reachable, and bound to the data dir's CA, the check `serve` makes at start. The
 * backup's file and the database's pg_dump are restored together; a backup made against another
 * database (a typo in its name, another gateway's) would pair this CA and these keys with a dump of
 * nothing or of another fleet, and a database that cannot be reached cannot be dumped either.
 *
 * @throws {StoreOpenError} If the database cannot be reached or used (store/open.ts says why).
 * @throws {BackupError} If there is no such database, or it holds no gateway's data, or was bound to another CA.
 */
async function checkPostgresDb(dataDir: string, db: string): Promise<void> {
  const caFile = join(dataDir, "pki", "ca.pem");
  const caPem = await readFile(caFile, "utf8").catch((e) => Promise.reject(new BackupError(`Cannot read ${caFile}: ${fsWhy(e)}`)));
  const cannot = `Cannot back up ${dataDir} with the database ${shownUrl(db)}`;
  // One connection: a failure is said in store/open.ts's words and advice (refused, no such host, a wrong password).
  const boundTo = await peekDatabaseMeta(db, CA_FINGERPRINT_META).catch((e: unknown) => {
    // store/open.ts advises creating a database that is not there (right for a first serve); the
    // database a backup names exists, or the --db is wrong.
    if (e instanceof StoreOpenError && e.sqlState === "3D000")
      throw new BackupError(`${cannot}: there is no such database (wrong --db?): give the --db gateway serve runs this data dir with`);
    throw e;
  });
  if (boundTo === undefined)
    throw new BackupError(`${cannot}: it holds no gateway's data (wrong --db?): give the --db gateway serve runs this data dir with`);
  if (boundTo !== caFingerprint(caPem)) throw new BackupError(`${cannot}: it was created by a gateway with another CA (wrong --db or --data?)`);
}

/** A path without a trailing slash ("data/" and "data" are one folder; "data/.replaced-..." would be inside it). */
const bare = (path: string) => normalize(path).replace(/(.)\/+$/, "$1");

/**
 * Where the backup goes must be a file in a folder that exists: checked before anything is
 * written there, so the error names the user's --out, not a temp name beside it.
 */
async function checkOut(out: string): Promise<void> {
  const why = await whyCannotWrite(out);
  if (why) {
    // A folder that is not there is a mistyped --out, and a folder given for the file a misread
    // one: bad usage (exit 2), as for backup keygen's --out and every --data.
    const typo = (await look(dirname(out)).catch(() => null)) === undefined;
    const folder = await look(out).then((s) => s !== "blocked" && !!s?.isDirectory(), () => false);
    throw new (typo || folder ? UsageError : BackupError)(`Cannot write the backup to ${out}: ${why}`);
  }
  // The backup replaces the file at --out: the last backup (rotation in place), never another
  // file a typo named (the database, a key, a notes file), which would be lost.
  const at = await look(out);
  if (at && at !== "blocked" && at.size > 0) {
    const head = Buffer.alloc(64);
    const read = await open(out, "r")
      .then((f) => f.read(head, 0, head.length, 0).finally(() => f.close()))
      .catch((e) => Promise.reject(new BackupError(`Cannot write the backup to ${out}: ${fsWhy(e)}`)));
    if (!startsAsBackup(head.subarray(0, read.bytesRead)))
      throw new UsageError(`--out ${out} exists and is not a gateway backup: a backup replaces only an earlier backup (or an empty file); choose another --out, or remove it`);
  }
}

/**
 * Refuses before writing when the file system holding `dir` has less room than `bytes` (what the
 * data dir's files add up to, a lower bound of what is written): a full disk is said in those
 * terms, with the sizes, instead of as an errno half way through.
 */
async function checkSpace(dir: string, bytes: number, fail: (why: string) => Error): Promise<void> {
  const free = await freeBytes(dir);
  if (free !== undefined && free < bytes) throw fail(`it needs at least ${sizeText(bytes)}, and the file system holding ${dir} has ${sizeText(free)} free`);
}

/** A file system error about `out` or its temp files (not about a data dir file being read). */
function aboutOut(err: unknown, out: string): boolean {
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.code !== "string" || !e.syscall) return false;
  if (e.path === undefined) return ["write", "fsync", "close"].includes(e.syscall);
  return e.path === out || (dirname(e.path) === dirname(out) && basename(e.path).startsWith("."));
}

/** What never goes into a backup: the live database files (a snapshot goes instead), temp files, in-flight uploads. */
function skipped(rel: string, withRegistry: boolean): boolean {
  if (rel === ADOPTED_ROOT) return false; // a dot file that is state, not a temp file (gateway/ota/key-store.ts)
  if (rel === SQLITE_DB_FILE || rel === `${SQLITE_DB_FILE}-wal` || rel === `${SQLITE_DB_FILE}-shm` || rel === `${SQLITE_DB_FILE}-journal`) return true;
  // Dot names are temp files and folders (a backup's snapshot folder too): what is inside them as well.
  if (rel === "serve.json" || rel === "serve.lock" || rel.endsWith(".tmp") || rel.split("/").some((p) => p.startsWith("."))) return true;
  if (isRegistryPath(rel)) return !withRegistry || REGISTRY_SCRATCH_FOLDERS.some((f) => rel.startsWith(`registry/${f}/`));
  return false;
}

const ADOPTED_ROOT = `tuf/keys/${ADOPTED_ROOT_FILE}`;

/**
 * The keys and certificates (tuf/, pki/): files, while the database is a snapshot. A key rotation
 * that runs between the two (`gateway keys rotate` on the serving gateway) would give a backup
 * whose database trusts a key its files no longer hold, and a restored gateway that cannot sign.
 * So they are read before the snapshot and again right after it, and the backup holds them as
 * read then (not as they are when packed): the two reads differ only if a rotation ran meanwhile.
 */
const isKeyPath = (rel: string) => rel.startsWith("tuf/") || rel.startsWith("pki/");

/** The key files of a data dir as they are now, by their path in it (a hash of each); only tuf/ and pki/ are walked, not a large registry. */
async function keyFiles(dataDir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const top of ["pki", "tuf"]) {
    if (!(await stat(join(dataDir, top)).catch(() => undefined))?.isDirectory()) continue;
    for await (const e of walk(dataDir, join(dataDir, top))) {
      if (e.dir || skipped(e.rel, false)) continue;
      const data = await readFile(e.path).catch((err: NodeJS.ErrnoException) => (err.code === "ENOENT" ? undefined : Promise.reject(err)));
      if (data) out.set(e.rel, hashOf(data));
    }
  }
  return out;
}

const BACKUP_TRIES_TEXT = "at every try";

/** A registry file the walk listed was removed before it was packed (registry gc). */
const registryChanged = (path: string) =>
  new DataDirChangedError(`Cannot back up: registry files were removed while the backup ran, ${BACKUP_TRIES_TEXT} (${path}; registry gc): nothing was written. Run the backup when gc is not running`);

/** Why a file of the walk could not be read into the backup: a registry file gone since (gc), or said as it is. */
const unreadable = (e: { rel: string; path: string }, err: unknown): Error =>
  isRegistryPath(e.rel) && (err as NodeJS.ErrnoException).code === "ENOENT" ? registryChanged(e.path) : new BackupError(`Cannot read ${e.path}: ${(err as Error).message}`);

const hashOf = (data: Uint8Array) => new Bun.CryptoHasher("sha256").update(data).digest("hex");

const KEYS_CHANGED =
  `Cannot back up: the gateway's keys changed while the backup ran, ${BACKUP_TRIES_TEXT} (a key rotation: gateway keys rotate), so its database and its key files would not match; ` +
  "nothing was written. Run the backup again once the rotation is done";

const isRegistryPath = (rel: string) => rel === "registry" || rel.startsWith("registry/");

async function* walk(root: string, dir = root): AsyncGenerator<{ rel: string; path: string; mode: number; size: number; dir: boolean }> {
  // A folder gone since its parent was read (an upload session that finished, one gc removed) holds nothing to back up.
  const entries = await readdir(dir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => (err.code === "ENOENT" && dir !== root ? [] : Promise.reject(err)));
  for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    const path = join(dir, e.name);
    const rel = relative(root, path).split("\\").join("/");
    // The live database's -wal and -shm come and go with checkpoints: one gone since readdir is not there.
    const st = await lstat(path).catch((err: NodeJS.ErrnoException) => (err.code === "ENOENT" ? undefined : Promise.reject(err)));
    if (!st) continue;
    if (e.isDirectory()) {
      yield { rel, path, mode: st.mode & 0o777, size: 0, dir: true };
      yield* walk(root, path);
    } else if (e.isFile()) yield { rel, path, mode: st.mode & 0o777, size: st.size, dir: false };
    // sockets, symlinks and the like are not part of a data dir
  }
}

/** A backup's scratch folder in the data dir, holding the plaintext database snapshot while it runs. */
const SCRATCH_PREFIX = ".backup-";
/** The same in the local temp folder, when the data dir has no room or cannot be written. */
const TMP_SCRATCH_PREFIX = "gateway-backup-";
/** In the scratch folder: the running backup's PID, so another backup spares the folder however long it runs. */
const SCRATCH_LOCK = "backup.lock";
/** A scratch folder with no lock file is removed once this old (a younger one may be a backup not yet holding it). */
const STALE_SCRATCH_MS = 60 * 60 * 1000;
/** A restore's temp dir beside --data, holding the decrypted data dir (the CA key, the admin token) until it is renamed into place. */
const RESTORE_PREFIX = ".restore-";
/**
 * In the restore's temp dir: the running restore's PID. A dot name, so the backup of a data dir
 * that still holds one (a restore killed between the rename and its removal) leaves it out.
 */
const RESTORE_LOCK = ".restore.lock";

// What a killed backup or restore leaves (kill -9, a power cut: no handler runs) is removed by the
// next one (lib/fs/owned-folder.ts removeDeadFolders). A backup's scratch holds a plaintext copy of
// the database, and a replica is made by copying the whole data dir (gateway/README.md, Replicas),
// so left there it would be copied to every replica; a restore's holds the decrypted data dir (the
// CA key, the admin token), under a dot name beside --data that `ls` does not show. A restore's
// folder without a lock is never removed: its temp name may hold the data dir a --force replaced,
// when it could not be renamed aside (restore names it to the user).

/**
 * Removes the temp files of `out` (lib/fs/atomic-write.ts names them `.NAME.PID-xxxx.tmp`) whose
 * writer is gone: a backup killed while writing leaves a partial, sealed copy beside --out that
 * nothing else would remove. A live writer's (another backup to the same --out) is spared.
 */
async function removeDeadTemps(out: string): Promise<void> {
  for (const name of await readdir(dirname(out)).catch(() => [] as string[])) {
    const t = tempFileOf(name);
    if (t?.target === basename(out) && processStartMs(t.pid) === undefined) await rm(join(dirname(out), name), { force: true }).catch(() => {});
  }
}

/** Removes this process's temp files of `out`, synchronously (a signal's handler: see createBackup). */
function removeOwnTemps(out: string): void {
  let names: string[];
  try {
    names = readdirSync(dirname(out));
  } catch {
    return;
  }
  for (const name of names) {
    const t = tempFileOf(name);
    if (t?.target === basename(out) && t.pid === process.pid) rmSync(join(dirname(out), name), { force: true });
  }
}

/**
 * A scratch folder for the database snapshot: in `dataDir`, or the local temp folder when there is
 * none or this user cannot write there (a read-only snapshot of a data dir). Either holds the lock
 * naming this backup, so the next one removes it if this one is killed (a plaintext database left
 * in /tmp would stay until a reboot, or for ever where /tmp is a disk).
 */
async function makeScratch(dataDir: string | undefined): Promise<string> {
  if (dataDir !== undefined) {
    const dir = await makeOwnedFolder(dataDir, SCRATCH_PREFIX, SCRATCH_LOCK).catch(() => undefined);
    if (dir) return dir;
  }
  return makeOwnedFolder(tmpdir(), TMP_SCRATCH_PREFIX, SCRATCH_LOCK).catch((e) =>
    Promise.reject(new BackupError(`Cannot make the database snapshot in ${dataDir ? `${dataDir} or ` : ""}${tmpdir()}: ${fsWhy(e)}`)),
  );
}

/** `VACUUM INTO` a file in `dir`, a consistent snapshot while the gateway runs; returns its path. */
function snapshotDatabase(dbPath: string, dir: string): string {
  const snapshot = join(dir, SQLITE_DB_FILE);
  let db: Database | undefined;
  try {
    db = new Database(dbPath);
    db.exec("PRAGMA busy_timeout = 10000");
    db.run("VACUUM INTO ?", [snapshot]);
  } catch (e) {
    // SQLite's own words ("file is not a database") named neither the file nor what it is for.
    if (isNoSpace(e)) throw e;
    if ((e as { code?: string }).code === "SQLITE_NOTADB")
      throw new BackupError(`Cannot back up the database ${dbPath}: it is not a SQLite database (give --db as gateway serve has it)`);
    throw new BackupError(`Cannot back up the database ${dbPath}: ${fsWhy(e)}`, { cause: e });
  } finally {
    // Closed now, not when a prepared statement is collected: the close may checkpoint and
    // remove DIR/gateway.db-wal, and must not do so while the walk lists the folder.
    db?.close(true);
  }
  return snapshot;
}


/** What `createBackup` returns: the manifest, and how many registry files went in (with `withRegistry`). */
export interface BackupResult extends BackupManifest {
  /**
   * Registry files in the backup. 0 with `withRegistry` usually means the registry is served from
   * another folder (`serve --registry-dir`) that was not given: the command says so.
   */
  registryFiles?: number;
}

/**
 * The data dir changed under the backup in a way that makes what it packed so far inconsistent: a
 * key rotation (KEYS_CHANGED), or `registry gc` removing a registry file after the walk listed it.
 * The backup is taken again from the start; nothing was written to --out.
 */
class DataDirChangedError extends BackupError {
  override name = "DataDirChangedError";
}

/** Tries at taking a backup while the data dir changes under it (DataDirChangedError), before saying so. */
const BACKUP_TRIES = 3;

/**
 * Writes a sealed backup of `dataDir` to `out`; returns its manifest. Taken again from the start
 * when the data dir changed under it (a key rotation, a registry gc), up to BACKUP_TRIES times.
 */
export async function createBackup(opts: BackupOptions): Promise<BackupResult> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await createBackupOnce(opts);
    } catch (e) {
      if (!(e instanceof DataDirChangedError) || attempt >= BACKUP_TRIES) throw e;
    }
  }
}

async function createBackupOnce(opts: BackupOptions): Promise<BackupResult> {
  const factory = await readFactoryName(opts.dataDir);
  const withRegistry = !!opts.withRegistry;
  if (opts.db !== undefined && !dbKind(opts.db)) throw new UsageError(dbKindProblem(opts.db));
  const postgres = opts.db !== undefined && dbKind(opts.db) === "postgres";
  // The data dir says it is served with PostgreSQL (DIR/database): its database is not DIR/gateway.db,
  // nor a SQLite file named by --db (one left from before a move to PostgreSQL would be backed up,
  // and a restore would serve its old rows).
  if (!postgres && (await servedDatabaseKind(opts.dataDir)) === "postgres")
    throw new UsageError(
      `--data ${opts.dataDir} is served with a PostgreSQL database: give its --db postgres://... as gateway serve has it${opts.db === undefined ? "" : `, not ${opts.db}`} (the backup checks it is this data dir's database; the database itself is backed up with pg_dump)`,
    );
  await checkOut(opts.out);
  // A backup inside the data dir is lost with it, and the next backup would hold it (each one twice the last).
  const [outDir, dataDir] = await Promise.all([realpath(dirname(opts.out)), realpath(opts.dataDir)]);
  if (outDir === dataDir || outDir.startsWith(dataDir + sep))
    throw new UsageError(`--out ${opts.out} is inside the data dir ${opts.dataDir}: a backup there is lost with it, and the next backup would hold it; write it to another folder, better another disk`);
  if (postgres) await checkPostgresDb(opts.dataDir, opts.db!);
  // The database snapshot is plaintext: it is made in the data dir (which holds the database
  // already), never beside --out, a folder that may be a share or off-site and is meant to receive
  // sealed files only. The walk below skips it. What killed backups left (a snapshot here, a partial
  // file beside --out) and a killed restore of this data dir (its decrypted files beside it) is removed first.
  await removeDeadFolders(opts.dataDir, SCRATCH_PREFIX, SCRATCH_LOCK, { locklessAfterMs: STALE_SCRATCH_MS });
  await removeDeadFolders(tmpdir(), TMP_SCRATCH_PREFIX, SCRATCH_LOCK, { locklessAfterMs: STALE_SCRATCH_MS });
  await removeDeadFolders(dirname(bare(opts.dataDir)), RESTORE_PREFIX, RESTORE_LOCK);
  await removeDeadTemps(opts.out);
  // Ctrl-C or SIGTERM (a systemd timer's TimeoutStopSec) ends the process without running the
  // `finally` below: the snapshot and the unfinished file beside --out are removed in the handler
  // instead (synchronously: nothing runs after it), and the file at --out is checked to be the one
  // that was there (renamed in just before the signal, it is this backup, complete).
  const outBefore = fileId(opts.out);
  let scratch: string | undefined;
  const releaseSignals = exitOnSignal("gateway backup", () => {
    opts.onInterrupt?.();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
    removeOwnTemps(opts.out);
    if (fileId(opts.out) !== outBefore) return `the backup was complete: it is at ${opts.out}`;
    return `removed the unfinished backup${postgres ? "" : " and its database snapshot"}; ${outBefore ? `${opts.out} still holds the last good backup, unchanged` : `nothing was written to ${opts.out}`}`;
  });
  try {
    scratch = await makeScratch(opts.dataDir);
    // The key files as they are before the snapshot: what is packed must be the same (isKeyPath says why).
    const keysBefore = await keyFiles(opts.dataDir);
    // The database first: its snapshot is the moment the backup stands for.
    let snapshot: string | undefined;
    if (!postgres) {
      const dbPath = opts.db ?? join(opts.dataDir, SQLITE_DB_FILE);
      const st = await stat(dbPath).catch(() => undefined);
      if (!st) throw new BackupError(`No database at ${dbPath}: a gateway on PostgreSQL is backed up with --db postgres://... (and pg_dump)`);
      if (st.isDirectory()) throw new BackupError(`Cannot back up the database ${dbPath}: it is a directory (give --db as gateway serve has it)`);
      try {
        snapshot = snapshotDatabase(dbPath, scratch);
      } catch (e) {
        // A data dir with room for the database but not for a second copy: the temp folder may have it.
        if (!isNoSpace(e) || !basename(scratch).startsWith(SCRATCH_PREFIX)) throw e;
        await rm(scratch, { recursive: true, force: true });
        scratch = await makeScratch(undefined);
        snapshot = snapshotDatabase(dbPath, scratch);
      }
    }

    const entries: { rel: string; path: string; mode: number; size: number; dir: boolean }[] = [];
    // A registry elsewhere (--registry-dir) goes in as registry/, in place of DIR/registry.
    const registryDir = withRegistry && opts.registryDir ? opts.registryDir : undefined;
    for await (const e of walk(opts.dataDir)) if (!skipped(e.rel, withRegistry) && !(registryDir && isRegistryPath(e.rel))) entries.push(e);
    if (registryDir) {
      const st = await stat(registryDir).catch(() => undefined);
      if (!st?.isDirectory()) throw new BackupError(`Cannot read the registry at --registry-dir ${registryDir}: ${st ? "it is a file" : "no such folder"}`);
      entries.push({ rel: "registry", path: registryDir, mode: st.mode & 0o777, size: 0, dir: true });
      for await (const e of walk(registryDir)) {
        const rel = `registry/${e.rel}`;
        if (!skipped(rel, true)) entries.push({ ...e, rel });
      }
    }
    if (snapshot) entries.push({ rel: SQLITE_DB_FILE, path: snapshot, mode: 0o600, size: (await stat(snapshot)).size, dir: false });
    // The key files as the backup will hold them, read now, after the snapshot: the same as before it, or a rotation ran meanwhile.
    const keys = new Map<string, Buffer>();
    for (const e of entries) {
      if (e.dir || !isKeyPath(e.rel)) continue;
      const data = await readFile(e.path).catch((err: NodeJS.ErrnoException) => (err.code === "ENOENT" ? undefined : Promise.reject(err)));
      if (!data || keysBefore.get(e.rel) !== hashOf(data)) throw new DataDirChangedError(KEYS_CHANGED);
      keys.set(e.rel, data);
    }
    if (keys.size !== keysBefore.size) throw new DataDirChangedError(KEYS_CHANGED);
    const files = entries.filter((e) => !e.dir);
    const manifest: BackupManifest = {
      format: BACKUP_FORMAT,
      createdAt: new Date().toISOString(),
      factory,
      database: postgres ? "postgres" : "sqlite",
      registry: withRegistry,
      files: files.length,
      bytes: files.reduce((s, e) => s + e.size, 0),
    };

    await checkSpace(dirname(opts.out), manifest.bytes, (why) => new BackupError(`Cannot write the backup to ${opts.out}: ${why}`));

    const pack = tar.pack();
    // The producer's error reaches the writer below as the archive's end (producerError says why);
    // as an 'error' event with no listener it would be a crash with a stack trace.
    pack.on("error", () => {});
    let producerError: unknown;
    const produce = (async () => {
      pack.entry({ name: MANIFEST, mode: 0o600 }, JSON.stringify(manifest, null, 2) + "\n");
      let done = 0;
      let bytes = 0;
      for (const e of entries) {
        if (e.dir) {
          pack.entry({ name: e.rel, type: "directory", mode: e.mode });
          continue;
        }
        if (e.size <= 1 << 20) {
          // Small files (keys, metadata, the snapshot of a small fleet) are read whole: one that
          // was rewritten since the walk is taken as it is now, never half old and half new.
          const data =
            keys.get(e.rel) ??
            (await readFile(e.path).catch((err: unknown): never => {
              throw unreadable(e, err);
            }));
          pack.entry({ name: e.rel, mode: e.mode }, data);
          bytes += data.length;
        } else {
          // Large files are registry blobs (content-addressed, never rewritten) or the database
          // snapshot (ours): streamed, so memory stays flat. Opened first: one removed since the
          // walk (registry gc) is found before its entry is begun, and once open it reads whole.
          const fh = await open(e.path).catch((err: unknown): never => {
            throw unreadable(e, err);
          });
          try {
            await new Promise<void>((resolve, reject) => {
              const sink = pack.entry({ name: e.rel, size: e.size, mode: e.mode }, (err) => (err ? reject(err) : resolve()));
              fh.createReadStream({ autoClose: false }).on("error", reject).pipe(sink);
            });
          } finally {
            await fh.close().catch(() => {});
          }
          bytes += e.size;
        }
        done++;
        opts.onProgress?.(done, bytes);
      }
      pack.finalize();
    })().catch((err: unknown) => {
      producerError = err;
      pack.destroy(err as Error);
    });

    await writeFileAtomic(opts.out, seal(pack as AsyncIterable<Uint8Array>, opts.secret), { mode: 0o600 }).catch((e) => {
      // Nothing reads the archive any more: stop it, so the producer does not wait on it forever
      // and an error it meets later is not an unhandled 'error' event (a crash with a stack trace).
      pack.destroy();
      // The producer's failure is why (the writer only saw the archive end): said as it is.
      if (producerError) return Promise.reject(producerError);
      return Promise.reject(aboutOut(e, opts.out) ? new BackupError(`Cannot write the backup to ${opts.out}: ${fsWhy(e)}`) : e);
    });
    await produce;
    return withRegistry ? { ...manifest, registryFiles: files.filter((e) => isRegistryPath(e.rel)).length } : manifest;
  } finally {
    releaseSignals();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }
}

/** Which file is at `path` (device, inode, size, change time), or undefined if none: tells the file there before from one renamed in since. */
function fileId(path: string): string | undefined {
  try {
    const st = statSync(path);
    return `${st.dev}:${st.ino}:${st.size}:${st.ctimeMs}`;
  } catch {
    return undefined;
  }
}

export interface RestoreOptions {
  file: string;
  dataDir: string;
  secret: OpenSecret;
  /**
   * Replace a gateway data dir that exists and is not empty: it is renamed to
   * `DIR.replaced-<UTC time>` beside it, kept, and named in the result. Any other non-empty
   * folder is refused.
   */
  force?: boolean;
  /** Put the backup's registry here (a new or empty folder, e.g. the replicas' shared one) instead of DIR/registry. */
  registryDir?: string;
  onProgress?: (files: number, bytes: number) => void;
}

export interface RestoreResult extends BackupManifest {
  /** Where the data dir that `force` replaced now is. */
  replaced?: string;
  /**
   * The factory of the replaced data dir, when its CA is not the restored one: the devices it
   * registered cannot reach the restored gateway (a backup of another gateway, most likely by mistake).
   */
  replacedOtherCa?: string;
  /** Where the registry went, when `registryDir` was given and the backup held one. */
  registryDir?: string;
  /**
   * The signal (Ctrl-C, SIGTERM) that came while the restored dir was being put in place: the
   * restore finished first, and the command stops once it has said what it did.
   */
  stoppedBy?: NodeJS.Signals;
}

/** `DIR.replaced-20250102T030405Z` (with -2, -3... if that exists): where --force keeps the dir it replaces. */
async function asideName(dir: string): Promise<string> {
  const base = `${dir}.replaced-${new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z")}`;
  for (let n = 1; ; n++) {
    const name = n === 1 ? base : `${base}-${n}`;
    if ((await look(name)) === undefined) return name;
  }
}

/** Restores a backup into `dataDir` (which must not exist or be empty unless `force`); returns its manifest. */
export async function restoreBackup(opts: RestoreOptions): Promise<RestoreResult> {
  // Everything about --data is checked before anything is read or written, and named as the user
  // gave it. The wrong --data is bad usage (exit 2), as for every command that takes --data.
  const dir = bare(opts.dataDir);
  const fail = (why: string) => new BackupError(`Cannot restore into --data ${opts.dataDir}: ${why}`);
  const target = await look(dir).catch((e) => Promise.reject(fail(fsWhy(e))));
  if (target === "blocked") throw new UsageError(`Cannot restore into --data ${opts.dataDir}: ${await blockedBy(dir)}`);
  if (target && !target.isDirectory()) throw new UsageError(`--data ${opts.dataDir} is a file, not a folder: give the folder to restore the data dir into`);
  const existing = target ? await readdir(dir).catch((e) => Promise.reject(fail(fsWhy(e)))) : undefined;
  if (existing?.length && !opts.force)
    throw new UsageError(`--data ${opts.dataDir} exists and is not empty: restore into a new folder, or pass --force to replace a gateway data dir`);
  // --force replaces a data dir, never one a gateway is serving from (it would go on with deleted
  // files): a --data that --force may not replace, bad usage (exit 2) as the other such --data.
  const inUse = (pid: number) => new UsageError(`${opts.dataDir} is in use by the gateway running as PID ${pid}: stop it before restoring over it`);
  const servedBy = await servingPid(dir);
  if (servedBy !== undefined) throw inUse(servedBy);
  if (existing?.length && !(await looksLikeDataDir(dir))) {
    const shown = namedFew(existing.sort(), 5);
    throw new UsageError(
      `--force replaces only a gateway data dir or an empty folder, and ${opts.dataDir} is neither: it holds ${shown} (none of ${DATA_DIR_MARKS.join(", ")}). Nothing was changed: give --data a new folder`,
    );
  }

  // A backup FILE that is not there is a typo: bad usage (exit 2); one there but unreadable is not.
  const source = await stat(opts.file).catch((e) => {
    const typo = ["ENOENT", "ENOTDIR"].includes((e as NodeJS.ErrnoException).code ?? "");
    return Promise.reject(new (typo ? UsageError : BackupError)(`Cannot read the backup ${opts.file}: ${fsWhy(e)}`));
  });
  if (source.isDirectory()) throw new BackupError(`Cannot read the backup ${opts.file}: it is a directory (give the backup file)`);

  // --registry-dir: checked now, so nothing is unpacked for a restore that could not finish. A
  // missing parent is made below, as --data's is.
  const registryDir = opts.registryDir ? bare(opts.registryDir) : undefined;
  const failReg = (why: string) => new BackupError(`Cannot restore the registry into --registry-dir ${opts.registryDir}: ${why}`);
  const registryParent = registryDir && dirname(registryDir);
  if (registryDir) {
    const at = await look(registryDir).catch((e) => Promise.reject(failReg(fsWhy(e))));
    if (at === "blocked") throw failReg(await blockedBy(registryDir));
    if (at && !at.isDirectory()) throw failReg("it is a file");
    if (at && (await readdir(registryDir)).length > 0) throw failReg("it is not empty (give a new or empty folder)");
  }

  const parent = dirname(dir);
  /** The topmost folder made for --data's parent: a restore that fails removes what it made (removeMadeFolders). */
  let madeParent: string | undefined;
  /** The topmost folder made for --registry-dir's parent, removed as madeParent is. */
  let madeRegistryParent: string | undefined;
  /** The temp dir beside --data the backup is unpacked into: decrypted keys, removed unless it was put in place. */
  let tmp: string | undefined;
  /** Set once the restored dir is in place: `tmp` may then hold the replaced data dir, never to be removed. */
  let restored = false;
  // Ctrl-C or SIGTERM ends the process without running the `catch` below: while the backup is
  // unpacked, its decrypted files (the CA key, the admin token) are removed in the handler instead,
  // synchronously. Once the restored dir is being put in place, the stop waits for that to finish
  // (cut short between two renames, --data could be missing): the command then says so and stops.
  let finishing = false;
  let stoppedBy: NodeJS.Signals | undefined;
  const releaseSignals = exitOnSignal("gateway restore", (signal) => {
    if (finishing) {
      stoppedBy = signal;
      process.stderr.write(`gateway restore: ${signal}: the restored data dir is being put in place at ${opts.dataDir}; stopping once it is\n`);
      return undefined;
    }
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    removeMadeFolders(madeRegistryParent, registryParent ?? parent);
    removeMadeFolders(madeParent, parent);
    return `removed the files unpacked so far: nothing was restored${existing?.length ? `, and ${opts.dataDir} is as it was` : ""}`;
  });
  try {
    if (!target) {
      const above = await look(parent).catch((e) => Promise.reject(fail(fsWhy(e))));
      if (above === "blocked" || (above && !above.isDirectory())) throw fail(await blockedBy(dir));
      madeParent = await mkdir(parent, { recursive: true }).catch((e) => Promise.reject(fail(`cannot create the folder ${parent}: ${fsWhy(e)}`)));
    }
    if (registryParent) {
      madeRegistryParent = await mkdir(registryParent, { recursive: true }).catch(async (e) => {
        removeMadeFolders(madeParent, parent);
        const why = (e as NodeJS.ErrnoException).code === "ENOTDIR" || (e as NodeJS.ErrnoException).code === "EEXIST" ? await blockedBy(registryDir!) : fsWhy(e);
        return Promise.reject(failReg(`cannot create the folder ${registryParent}: ${why}`));
      });
    }
    // What a killed restore (kill -9, a power cut: no handler runs) left beside --data: the decrypted data dir.
    await removeDeadFolders(parent, RESTORE_PREFIX, RESTORE_LOCK);
    const made: string = await mkdtemp(join(parent, RESTORE_PREFIX)).catch((e) => {
      removeMadeFolders(madeRegistryParent, registryParent ?? parent);
      removeMadeFolders(madeParent, parent);
      return Promise.reject(fail(`cannot write in the folder ${parent}: ${fsWhy(e)}`));
    });
    tmp = made;
    const m = await unpackAndPlace(made);
    return { ...m, ...(stoppedBy ? { stoppedBy } : {}) };
  } finally {
    releaseSignals();
  }

  async function unpackAndPlace(tmp: string): Promise<RestoreResult> {
    // A write into the temp dir that fails (a full disk) is about --data, not the temp name; the backup's own errors pass through.
    const unpackFailed = (e: unknown) => ((e as NodeJS.ErrnoException)?.syscall ? fail(`${fsWhy(e)}; nothing was restored`) : e);
    try {
      // Held until the folder is in place (then removed from there): another restore or backup spares it while this restore lives.
      acquireLock(join(tmp, RESTORE_LOCK));
      const extract = tar.extract();
      Readable.from(unseal(createReadStream(opts.file), opts.secret)).on("error", (e) => extract.destroy(e)).pipe(extract);
      let manifest: BackupManifest | undefined;
      let files = 0;
      let bytes = 0;
      for await (const entry of extract) {
        const name = entry.header.name.replace(/\/+$/, "");
        const clean = posix.normalize(name);
        if (!name || clean.startsWith("../") || clean === ".." || posix.isAbsolute(clean) || clean !== name)
          throw new BackupError(`The backup holds an unsafe path "${entry.header.name}"`);
        if (entry.header.type === "directory") {
          await mkdir(join(tmp, clean), { recursive: true, mode: (entry.header.mode ?? 0o700) & 0o777 }).catch((e) => Promise.reject(unpackFailed(e)));
          entry.resume();
          continue;
        }
        if (entry.header.type !== "file") throw new BackupError(`The backup holds an unexpected ${entry.header.type} entry "${name}"`);
        if (clean === MANIFEST) {
          manifest = JSON.parse(Buffer.concat(await Array.fromAsync(entry as AsyncIterable<Buffer>)).toString("utf8")) as BackupManifest;
          if (manifest.format !== BACKUP_FORMAT) throw new BackupError(`Unsupported backup format ${manifest.format} (this gateway reads format ${BACKUP_FORMAT})`);
          // Everything is unpacked beside --data first (the registry too): that file system needs room for all of it.
          await checkSpace(parent, manifest.bytes, (why) => fail(`${why}; nothing was restored`));
          continue;
        }
        if (!manifest) throw new BackupError("The backup has no manifest first: it was not made by `gateway backup`");
        await writeFileAtomic(join(tmp, clean), entry as AsyncIterable<Uint8Array>, { mode: (entry.header.mode ?? 0o600) & 0o777 }).catch((e) =>
          Promise.reject(unpackFailed(e)),
        );
        bytes += entry.header.size ?? 0;
        files++;
        opts.onProgress?.(files, bytes);
      }
      if (!manifest) throw new BackupError("The backup is empty");
      if (files !== manifest.files) throw new BackupError(`The backup holds ${files} files, its manifest says ${manifest.files}`);
      // A backup made before data dirs recorded their database still says which it was: a restored
      // PostgreSQL gateway started without its --db is then refused, not given an empty SQLite one.
      await recordDatabaseKind(tmp, manifest.database);
      // Its first start signs above what the lost gateway signed since the backup (after-restore.ts).
      await markRestored(tmp, manifest.createdAt);

      finishing = true;
      await pauseForTest();
      let replaced: string | undefined;
      let replacedOtherCa: string | undefined;
      if (existing?.length) {
        // Said, not refused: the old dir is kept, and restoring another gateway's backup may be meant.
        const caOf = (d: string) => readFile(join(d, "pki", "ca.pem"), "utf8").catch(() => undefined);
        const [oldCa, newCa] = await Promise.all([caOf(dir), caOf(tmp)]);
        if (oldCa && oldCa !== newCa) replacedOtherCa = await readFactoryName(dir).catch(() => "unknown");
        // The gateway's own lock (serve.lock, keyed by the folder's inode) on both folders: a gateway
        // that started while the backup was read is refused here, and one that starts during the
        // swap finds the restored dir locked too (its lock moves with it). The two folders swap in
        // one system call, so DIR is never missing (a gateway starting then would make a fresh
        // one); where that call cannot be made, two renames leave it missing for the time of one.
        const lock = await lockDataDir(dir).catch((e) => Promise.reject(e instanceof DataDirInUseError ? inUse(e.pid) : e));
        const aside = await asideName(dir);
        try {
          await lockDataDir(tmp);
          if (await exchangePaths(tmp, dir)) {
            // The old data dir is at the temp name now: from here on it must not be removed as a temp dir.
            restored = true;
            replaced = await rename(tmp, aside).then(() => aside, () => tmp);
          } else {
            await rename(dir, aside);
            try {
              await rename(tmp, dir);
            } catch (e) {
              const back = await rename(aside, dir).then(() => true, () => false);
              throw new BackupError(
                `Cannot put the restored data dir in place at ${dir}: ${fsWhy(e)}; ` + (back ? `${dir} is as it was` : `the data dir that was there is in ${aside}`),
              );
            }
            replaced = aside;
          }
        } finally {
          lock.release(); // DIR/serve.lock: ours, whichever folder is at DIR now
          // The replaced dir's locks are dead; one left in it would let a later restore take it, at a temp name, for its own leftover.
          if (replaced) await Promise.all([rm(join(replaced, "serve.lock"), { force: true }), rm(join(replaced, RESTORE_LOCK), { force: true })]);
        }
      } else await rename(tmp, dir);
      await rm(join(dir, RESTORE_LOCK), { force: true }); // it came along with the restored dir
      await syncDir(parent);
      // The registry leaves the restored data dir last: if that fails, the data dir is whole and holds it.
      let registryMoved: string | undefined;
      if (registryDir && manifest.registry) {
        await moveFolder(join(dir, "registry"), registryDir).catch((e: Error) =>
          Promise.reject(new BackupError(`${e.message}; the data dir is restored at ${dir} and holds the registry in ${join(dir, "registry")}: move it by hand`)),
        );
        registryMoved = registryDir;
      } else removeMadeFolders(madeRegistryParent, registryParent ?? parent); // nothing to put there
      return {
        ...manifest,
        ...(replaced ? { replaced } : {}),
        ...(replaced && replacedOtherCa ? { replacedOtherCa } : {}),
        ...(registryMoved ? { registryDir: registryMoved } : {}),
      };
    } catch (err) {
      if (!restored) await rm(tmp, { recursive: true, force: true });
      if (!restored) removeMadeFolders(madeRegistryParent, registryParent ?? parent); // first: it may be inside madeParent
      removeMadeFolders(madeParent, parent);
      throw err;
    }
  }
}

/**
 * For tests only: `GATEWAY_FAULT=restore-pause-in-place` stops a restore as it begins to put the
 * restored dir in place (from where a Ctrl-C waits for it to finish); it says so on stderr and
 * waits until its stdin is closed, so a test can send a signal in that window. Nothing happens unless it is set.
 */
async function pauseForTest(): Promise<void> {
  if (process.env.GATEWAY_FAULT !== "restore-pause-in-place") return;
  process.stderr.write("restore: paused putting the data dir in place (GATEWAY_FAULT=restore-pause-in-place): closing stdin resumes it\n");
  await Bun.stdin.text();
}

/**
 * Moves a folder to `to` (new, or empty): a rename on one file system, a copy then a delete
 * across two (a shared registry folder is often on another mount).
 */
async function moveFolder(from: string, to: string): Promise<void> {
  await rmdir(to).catch(() => {}); // missing, or empty (checked before unpacking)
  try {
    await rename(from, to);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EXDEV") throw new BackupError(`Cannot put the registry at ${to}: ${fsWhy(e)}`);
    await cp(from, to, { recursive: true, preserveTimestamps: true, errorOnExist: true }).catch((err) =>
      Promise.reject(new BackupError(`Cannot copy the registry to ${to}: ${fsWhy(err)}`)),
    );
    await rm(from, { recursive: true, force: true });
  }
  await syncDir(dirname(to));
}
