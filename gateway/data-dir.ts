/**
 * The gateway data dir (docs/ARCHITECTURE.md): created on first start, reused
 * after. Secrets are written mode 0600 and never logged. The server
 * certificate is reissued when the public host is not among its names, and when less than a year
 * of it is left (pki/ca.ts SERVER_CERT_RENEW_DAYS).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { lstat, mkdir, readFile, realpath, rm, rmdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../lib/fs/atomic-write.ts";
import { fsWhy } from "../lib/fs/why.ts";
import { removeMadeFolders } from "../lib/fs/paths.ts";
import { acquireLock, LockedError, lockFilePid, lockHolder, processArgs, processStartMs, type Lock } from "../lib/fs/pid-lock.ts";
import { certificateHosts, certificateNotAfter, createCa, issueServerCert, loadCa, SERVER_CERT_RENEW_DAYS, type CertificateAuthority } from "./pki/ca.ts";
import { newToken } from "./pki/tokens.ts";

/** The SQLite database a data dir keeps (gateway serve's default --db), by its name in DIR. */
export const SQLITE_DB_FILE = "gateway.db";

export interface DataDir {
  dir: string;
  factory: string;
  adminToken: string;
  /** True when this open wrote a new admin token (the first start): serve says where it is. */
  newAdminToken: boolean;
  ca: CertificateAuthority;
  serverCertPem: string;
  serverKeyPem: string;
  /** Set when this open replaced a server certificate because too little of it was left: when the old one ended. */
  serverCertRenewed?: { oldNotAfter: string };
  /** HMAC key of registry bearer tokens. */
  registrySecret: string;
  keysDir: string;
  /** The embedded registry's storage: serve's --registry-dir, or DIR/registry. */
  registryDir: string;
  dbPath: string;
}

export class FactoryMismatchError extends Error {
  override name = "FactoryMismatchError";
  constructor(dir: string, have: string, asked: string) {
    super(`Cannot use --factory ${asked}: ${dir} belongs to factory "${have}" (the name is fixed at the first start)`);
  }
}

export class DataDirError extends Error {
  override name = "DataDirError";
}

/** Whether `err` is the OS refusing this user (EACCES, EPERM): fsWhy's words are the one test of it. */
const permissionDenied = (err: unknown): boolean => fsWhy(err) === "permission denied";

/**
 * A data dir, or a file in it, this user may not read. The gateway makes DIR mode 0700 for the
 * user it runs as, so the usual cause is an admin command run without sudo, not a wrong folder.
 * `orElse` is another way the command offers (", or give --server URL --token TOKEN").
 */
export class DataDirUnreadableError extends DataDirError {
  override name = "DataDirUnreadableError";
  // The errno is kept, not made the cause: its message would only say the path again, worse.
  constructor(
    readonly path: string,
    readonly errno: unknown,
    orElse = "",
  ) {
    super(`Cannot read ${path}: ${fsWhy(errno)}; run as the user that owns it (the one gateway serve runs as) or as root${orElse}`);
  }
}

/** A --factory that cannot name a factory (bad usage: checked before the data dir is made). */
export class InvalidFactoryNameError extends DataDirError {
  override name = "InvalidFactoryNameError";
  constructor(name: string) {
    super(`Invalid --factory "${name}": use lower-case letters and digits, joined by -, _ or __ (at most 63, starting and ending with a letter or digit)`);
  }
}

/** @throws {InvalidFactoryNameError} */
export function checkFactoryName(name: string): void {
  if (!FACTORY_NAME.test(name)) throw new InvalidFactoryNameError(name);
}

/** Another `gateway serve` runs on this data dir. */
export class DataDirInUseError extends DataDirError {
  override name = "DataDirInUseError";
  constructor(
    readonly dir: string,
    readonly pid: number,
  ) {
    super(`${dir} is in use by the gateway running as PID ${pid}: stop it first (each replica needs its own copy of the data dir)`);
  }
}

/** Files the gateway keeps at the data dir's top (DATA_DIR_ENTRIES below; each has its path function). */
const SERVE_LOCK_FILE = "serve.lock";
const SERVE_INFO_FILE = "serve.json";
const DATABASE_KIND_FILE = "database";
/** The embedded registry's storage in the data dir, unless `gateway serve --registry-dir` puts it elsewhere. */
const REGISTRY_DIR = "registry";
/** DIR/serve.lock, held by the `gateway serve` running on DIR (lib/fs/pid-lock.ts). */
const serveLockPath = (dir: string) => join(dir, SERVE_LOCK_FILE);

/**
 * Takes DIR/serve.lock for a `gateway serve`, creating DIR: two gateways on one data dir would
 * rewrite each other's serve.json and TLS certificate. A lock left by a killed gateway is taken over.
 *
 * @throws {DataDirInUseError} If a live gateway holds it, or one of a release before the lock serves DIR.
 */
export async function lockDataDir(dir: string): Promise<Lock> {
  const made = await mkdir(dir, { recursive: true, mode: 0o700 }).catch((e: NodeJS.ErrnoException) => {
    // The reason is said in words; the errno (EEXIST from mkdir) would only say it again, worse.
    if (e.code === "EEXIST" || e.code === "ENOTDIR") throw new DataDirError(`Cannot use ${dir} as the data dir: it, or a directory above it, is a file`);
    if (permissionDenied(e))
      throw new DataDirError(`Cannot make the data dir ${dir}: ${fsWhy(e)}; make it first for the user gateway serve runs as (install -d -m 0700 -o USER ${dir}), or run gateway serve as root`);
    if (e.code === "EROFS")
      throw new DataDirError(`Cannot make the data dir ${dir}: the file system is read-only; give a --data on a writable one (it holds the database, the keys and the registry)`);
    // A kernel file system such as /proc answers "no such file"; any other refusal (a full disk) in words, not as an errno.
    if (e.code === "ENOENT") throw new DataDirError(`Cannot make the data dir ${dir}: the file system there takes no new folders (give a --data on a disk)`);
    if (typeof e.code === "string") throw new DataDirError(`Cannot make the data dir ${dir}: ${fsWhy(e)}`);
    throw e;
  });
  const unlocked = await lockFreeServePid(dir); // one of a release before the lock (before taking it: the lock file names its PID)
  if (unlocked !== undefined && unlocked !== process.pid) throw new DataDirInUseError(dir, unlocked);
  try {
    return acquireLock(serveLockPath(dir), process.pid, await dirIdentity(dir));
  } catch (e) {
    if (e instanceof LockedError) throw new DataDirInUseError(dir, e.pid);
    removeMadeFolders(made, dir); // a first start refused here (a full disk) leaves no empty folders behind
    throw e;
  }
}

/** The PID of the `gateway serve` running on DIR, if one is: one holding serve.lock, or one of a release before it. */
export async function servingPid(dir: string): Promise<number | undefined> {
  const identity = await dirIdentity(dir).catch(() => undefined);
  if (identity === undefined) return undefined;
  return lockHolder(serveLockPath(dir), identity) ?? (await lockFreeServePid(dir));
}

/** Slack for the clocks in lockFreeServePid: /proc's boot time is whole seconds, and some filesystems keep mtimes to 2 s. */
const CLOCK_SLACK_MS = 2000;

/**
 * The PID of a gateway of a release before serve.lock (2026-12-03) serving DIR: it wrote
 * DIR/serve.json with its PID when it started listening and removed it when it stopped. A killed
 * one leaves the file, and in time its PID is another process's. So the PID counts only if its
 * process started before serve.json was written: a PID is one live process's at a time, so a
 * process running now that already ran then is the one that wrote it, and a reused PID's process
 * started after. As a check on that (a clock stepped since, a PID of another PID namespace) it
 * must also have `serve` among its arguments, as every start of one has (`gateway serve`,
 * `bun gateway/main.ts serve`); not the program's name, which an install may change. A
 * serve.json whose PID serve.lock names is this release's gateway's: the lock has decided (a copy
 * of a running gateway's data dir, lock and serve.json with it, is not in use by it).
 */
async function lockFreeServePid(dir: string): Promise<number | undefined> {
  const file = serveInfoPath(dir);
  const written = await stat(file).catch(() => undefined);
  let pid: unknown;
  try {
    pid = (JSON.parse((await readOr(file)) ?? "null") as Partial<ServeInfo> | null)?.pid;
  } catch {
    return undefined; // garbled: it names no process (readServeInfo says so to the admin commands)
  }
  if (!written || typeof pid !== "number" || pid === lockFilePid(serveLockPath(dir))) return undefined;
  if (!processArgs(pid)?.includes("serve")) return undefined;
  const started = processStartMs(pid);
  return started !== undefined && started <= written.mtimeMs + CLOCK_SLACK_MS ? pid : undefined;
}

/**
 * DIR's device and inode: the lock holds for this directory only, so a copy of a data dir taken
 * while its gateway runs (each replica runs from its own copy) is not "in use" by that gateway.
 */
const dirIdentity = async (dir: string) => {
  const st = await stat(dir);
  return `${st.dev}:${st.ino}`;
};

async function readOr(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    if (permissionDenied(e)) throw new DataDirUnreadableError(path, e);
    throw e;
  }
}

/**
 * A factory name: the first part of every repository name of its registry (`<factory>/<app>`), so
 * one component of the OCI name grammar (gateway/registry/_names.ts; no dots here), at most 63
 * characters. `acme-` or `a___b` would make every publish's push fail as NAME_INVALID.
 */
export const FACTORY_NAME = /^(?=.{1,63}$)[a-z0-9]+(?:(?:__?|-+)[a-z0-9]+)*$/;

/**
 * The factory of an existing data dir, for the commands that work on one offline (backup,
 * registry gc): they must not take a typo for an empty gateway.
 *
 * @throws {DataDirError} If DIR holds no readable factory.json.
 * @throws {DataDirUnreadableError} If this user may not read it.
 */
export async function readFactoryName(dir: string): Promise<string> {
  try {
    const name = (JSON.parse(await readFile(join(dir, "factory.json"), "utf8")) as { name?: unknown }).name;
    if (typeof name === "string") return name;
  } catch (e) {
    // Another user's data dir (mode 0700) is not "no data dir": said as the admin commands say it.
    if (permissionDenied(e)) throw new DataDirUnreadableError(join(dir, "factory.json"), e);
  }
  throw new DataDirError(`${dir} is not a gateway data dir (no readable factory.json)`);
}

/**
 * The factory CA of an existing data dir, for the commands that issue from it offline
 * (`gateway proxy-cert`); nothing is made.
 *
 * @throws {DataDirError} If DIR holds no readable factory.json, or its pki/ca.pem and ca.key are missing or damaged.
 */
export async function readDataDirCa(dir: string): Promise<CertificateAuthority> {
  await readFactoryName(dir);
  const pki = join(dir, "pki");
  const [pem, key] = await Promise.all([readOr(join(pki, "ca.pem")), readOr(join(pki, "ca.key"))]);
  if (!pem || !key) throw new DataDirError(`Cannot read the factory CA in ${pki}: ${!pem && !key ? "ca.pem and ca.key are" : !pem ? "ca.pem is" : "ca.key is"} missing`);
  return loadCa(pem, key).catch((e: unknown) => Promise.reject(damaged(join(pki, "ca.pem and ca.key"), e)));
}

/** The error for a file of the data dir that is there but cannot be read: it names the file, not the parser's words alone. */
const damaged = (file: string, e: unknown) => new DataDirError(`Cannot read ${file}: ${(e as Error).message}; restore the data dir from a backup`, { cause: e });

/**
 * Files only a gateway data dir holds (written at its first start): any one of them marks a
 * folder as one, a damaged data dir too. `gateway restore --force` replaces nothing else.
 */
export const DATA_DIR_MARKS = ["factory.json", "pki/ca.pem", "pki/ca.key", "admin-token"] as const;

/** What SQLite keeps beside a database file, by suffix. */
export const SQLITE_SIDE_FILES = ["-wal", "-shm", "-journal"] as const;

/**
 * What a data dir holds at its top, marks or not: the folders and files the gateway makes (a
 * first start killed before it wrote factory.json leaves some of these and none of the marks).
 */
export const DATA_DIR_ENTRIES: ReadonlySet<string> = new Set([
  ...DATA_DIR_MARKS.filter((m) => !m.includes("/")),
  "pki",
  "tuf",
  REGISTRY_DIR, // absent when serve has --registry-dir (an empty one from before that is left as it is)
  DATABASE_KIND_FILE,
  SERVE_LOCK_FILE,
  SERVE_INFO_FILE,
  SQLITE_DB_FILE,
  ...SQLITE_SIDE_FILES.map((s) => SQLITE_DB_FILE + s),
]);

/**
 * Whether `dir` holds any of {@link DATA_DIR_MARKS}.
 *
 * @throws {DataDirUnreadableError} If this user may not look into `dir` (not "no data dir": it may well be one).
 */
export async function looksLikeDataDir(dir: string): Promise<boolean> {
  for (const mark of DATA_DIR_MARKS) {
    const there = await lstat(join(dir, mark)).then(
      () => true,
      (e: unknown) => {
        if (permissionDenied(e)) throw new DataDirUnreadableError(dir, e);
        return false;
      },
    );
    if (there) return true;
  }
  return false;
}

/**
 * DIR/registry: where the embedded registry keeps its storage unless serve is given
 * --registry-dir. `gateway registry gc --data DIR` looks there when it is not given one: so the
 * folder is made only when the registry is there, and gc finding none knows the registry is elsewhere.
 */
export const embeddedRegistryPath = (dir: string) => join(dir, REGISTRY_DIR);

/**
 * Opens DIR, creating whatever is missing but the registry's folder ({@link makeRegistryDir}, once
 * the database has taken the data dir). `hosts` are the names the TLS certificate must cover;
 * `registryDir` is serve's --registry-dir (DataDir.registryDir: it, or DIR/registry).
 */
export async function openDataDir(dir: string, opts: { factory?: string; hosts: string[]; registryDir?: string }): Promise<DataDir> {
  if (opts.factory !== undefined) checkFactoryName(opts.factory);
  const pki = join(dir, "pki");
  const keysDir = join(dir, "tuf", "keys");
  const registryDir = opts.registryDir ?? embeddedRegistryPath(dir);
  for (const d of [dir, pki, keysDir]) await mkdir(d, { recursive: true, mode: 0o700 });

  const factoryFile = join(dir, "factory.json");
  let factory: string;
  const existing = await readOr(factoryFile);
  if (existing) {
    try {
      factory = (JSON.parse(existing) as { name: string }).name;
    } catch (e) {
      throw damaged(factoryFile, e);
    }
    if (typeof factory !== "string") throw new DataDirError(`Cannot read ${factoryFile}: it has no factory name; restore it from a backup`);
    if (opts.factory !== undefined && opts.factory !== factory) throw new FactoryMismatchError(dir, factory, opts.factory);
  } else {
    factory = opts.factory ?? "main";
    await writeFileAtomic(factoryFile, JSON.stringify({ name: factory }) + "\n");
  }

  let caPem = await readOr(join(pki, "ca.pem"));
  let caKey = await readOr(join(pki, "ca.key"));
  let ca: CertificateAuthority;
  if (caPem && caKey) ca = await loadCa(caPem, caKey).catch((e: unknown) => Promise.reject(damaged(join(pki, "ca.pem and ca.key"), e)));
  else if (caPem || caKey) throw new DataDirError(`Cannot open ${pki}: one of ca.pem and ca.key is missing`);
  else {
    ca = await createCa(factory);
    await writeFileAtomic(join(pki, "ca.key"), ca.keyPem, { mode: 0o600 });
    await writeFileAtomic(join(pki, "ca.pem"), ca.certPem);
  }

  let serverCertPem = await readOr(join(pki, "server.pem"));
  let serverKeyPem = await readOr(join(pki, "server.key"));
  const wanted = [...new Set(opts.hosts)];
  let covered: string[] = [];
  let notAfter: Date | undefined;
  try {
    covered = serverCertPem ? certificateHosts(serverCertPem) : [];
    notAfter = serverCertPem ? certificateNotAfter(serverCertPem) : undefined;
  } catch (e) {
    throw damaged(join(pki, "server.pem"), e);
  }
  // Reissued when a name is missing, or when less than SERVER_CERT_RENEW_DAYS are left of it,
  // unless it ends with the CA already: a new one would end there too (pki/ca.ts caps it).
  let serverCertRenewed: DataDir["serverCertRenewed"];
  if (notAfter && notAfter.getTime() - Date.now() < SERVER_CERT_RENEW_DAYS * 86_400_000 && notAfter < ca.cert.notAfter)
    serverCertRenewed = { oldNotAfter: notAfter.toISOString() };
  if (!serverCertPem || !serverKeyPem || !wanted.every((h) => covered.includes(h)) || serverCertRenewed) {
    const issued = await issueServerCert(ca, wanted);
    serverCertPem = issued.certPem;
    serverKeyPem = issued.keyPem;
    await writeFileAtomic(join(pki, "server.key"), serverKeyPem, { mode: 0o600 });
    await writeFileAtomic(join(pki, "server.pem"), serverCertPem);
  }

  const tokenFile = join(dir, "admin-token");
  let adminToken = (await readOr(tokenFile))?.trim();
  const newAdminToken = !adminToken;
  if (!adminToken) {
    adminToken = newToken(ca.fingerprint).token;
    await writeFileAtomic(tokenFile, adminToken + "\n", { mode: 0o600 });
  }

  // The built-in registry's bearer-token secret. It used to be pki/registry-token.key, the name
  // the external registry's JWT signer (registry/jwt.ts) gives its own key: with
  // --external-registry-service the signer overwrote it, and after a restart the secret was the
  // signer's key text, so every registry token issued before stopped verifying. A data dir from
  // then whose registry-token.key still holds a secret (not a PEM key) has it moved here; one
  // whose file the signer had taken gets a secret derived from that key, so replicas running
  // from copies of one data dir still share their secret (a random one each would make a token
  // from one replica unknown to the others).
  const secretFile = join(pki, "registry-secret.key");
  let registrySecret = (await readOr(secretFile))?.trim();
  if (!registrySecret) {
    const legacyFile = join(pki, "registry-token.key");
    const legacy = (await readOr(legacyFile))?.trim();
    const signerKey = legacy?.startsWith("-----BEGIN");
    if (!legacy) registrySecret = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64url");
    else if (signerKey) registrySecret = createHash("sha256").update(`registry bearer-token secret\n${legacy}`).digest("base64url");
    else registrySecret = legacy;
    await writeFileAtomic(secretFile, registrySecret + "\n", { mode: 0o600 });
    if (legacy && !signerKey) await rm(legacyFile, { force: true }); // moved: the signer may take the name
  }

  return {
    dir,
    factory,
    adminToken,
    newAdminToken,
    ca,
    serverCertPem,
    serverKeyPem,
    ...(serverCertRenewed ? { serverCertRenewed } : {}),
    registrySecret,
    keysDir,
    registryDir,
    dbPath: join(dir, SQLITE_DB_FILE),
  };
}

/**
 * Makes the embedded registry's folder: `registryDir` (serve's --registry-dir) or DIR/registry.
 * Called once the database checks passed, so a start they refuse leaves no empty registry folder
 * in a data dir. With `registryDir`, an empty DIR/registry (made by gateways before this one
 * whatever --registry-dir said) is removed, so that `gateway registry gc --data DIR` without
 * --registry-dir refuses instead of collecting an empty folder.
 */
export async function makeRegistryDir(dir: string, registryDir?: string): Promise<void> {
  await mkdir(registryDir ?? embeddedRegistryPath(dir), { recursive: true, mode: 0o700 });
  if (registryDir !== undefined) await removeEmptyEmbeddedRegistry(dir, registryDir);
}

/** DIR/registry, when it is an empty folder and not `registryDir` itself (nor a link to it, or it to DIR/registry). */
async function removeEmptyEmbeddedRegistry(dir: string, registryDir: string): Promise<void> {
  const embedded = embeddedRegistryPath(dir);
  const real = (p: string) => realpath(p).catch(() => p);
  if ((await real(embedded)) === (await real(registryDir))) return;
  if (!(await lstat(embedded).catch(() => undefined))?.isDirectory()) return;
  await rmdir(embedded).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== "ENOTEMPTY" && e.code !== "EEXIST" && e.code !== "ENOENT") throw e; // one with content is someone's: left
  });
}

/**
 * DIR/database: the kind of database the data dir was last served with ("postgres" or
 * "sqlite"). A PostgreSQL URL is not kept (it may hold a password); the kind is enough for a
 * start without `--db` to refuse instead of making an empty SQLite database beside the CA and
 * keys (a restored data dir, a replica's copy, a unit file that lost its --db).
 */
export const databaseKindPath = (dir: string) => join(dir, DATABASE_KIND_FILE);

export async function readDatabaseKind(dir: string): Promise<"postgres" | "sqlite" | undefined> {
  const kind = (await readOr(databaseKindPath(dir)))?.trim();
  return kind === "postgres" || kind === "sqlite" ? kind : undefined;
}

/**
 * The kind of database a data dir was served with, as a start must know it before it opens the
 * data dir (which makes a first start's CA): DIR/database, or for a data dir from before that file
 * (gateways up to 2026-12-02) that already holds a CA, "postgres" when no gateway.db is beside it.
 * Without that, such a PostgreSQL data dir started without --db got a new, empty SQLite fleet.
 */
export async function servedDatabaseKind(dir: string): Promise<"postgres" | "sqlite" | undefined> {
  const recorded = await readDatabaseKind(dir);
  if (recorded || !(await stat(join(dir, "pki", "ca.pem")).catch(() => undefined))) return recorded;
  return (await stat(join(dir, SQLITE_DB_FILE)).catch(() => undefined)) ? "sqlite" : "postgres";
}

export async function recordDatabaseKind(dir: string, kind: "postgres" | "sqlite"): Promise<void> {
  if ((await readDatabaseKind(dir)) !== kind) await writeFileAtomic(databaseKindPath(dir), `${kind}\n`, { mode: 0o600 });
}

/** A start without --db on a data dir served with PostgreSQL. */
export class DatabaseFlagMissingError extends DataDirError {
  override name = "DatabaseFlagMissingError";
  constructor(dir: string) {
    super(
      `Cannot serve ${dir} without --db: it was served with a PostgreSQL database; give the same --db postgres://... ` +
        `(without it a new, empty SQLite database would be made: to do that on purpose, write sqlite into ${databaseKindPath(dir)})`,
    );
  }
}

/** DIR/serve.json: where a running `gateway serve` listens, so the admin CLI finds it from --data. */
export interface ServeInfo {
  url: string;
  publicUrl: string;
  pid: number;
}

export const serveInfoPath = (dir: string) => join(dir, SERVE_INFO_FILE);

export async function writeServeInfo(dir: string, info: ServeInfo) {
  await writeFileAtomic(serveInfoPath(dir), JSON.stringify(info) + "\n");
}

export async function readServeInfo(dir: string): Promise<ServeInfo | undefined> {
  const text = await readOr(serveInfoPath(dir));
  if (!text) return undefined;
  try {
    return JSON.parse(text) as ServeInfo;
  } catch (cause) {
    throw new DataDirError(`Cannot read ${serveInfoPath(dir)}: it is not JSON (gateway serve writes it; remove it if no gateway runs on ${dir})`, { cause });
  }
}

export async function readAdminToken(dir: string): Promise<string | undefined> {
  return (await readOr(join(dir, "admin-token")))?.trim() || undefined;
}
