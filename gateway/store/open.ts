/**
 * Opens the store named by --db: a postgres:// URL, or a SQLite file path. One that cannot be
 * opened is said with the database (password masked), why, and what to do: Bun says only "Failed
 * to connect" or "unable to open database file", PostgreSQL names the problem but not the fix, and
 * a URL of another scheme would be taken for a file name. Bun.SQL says "connection refused" for a
 * host name that does not resolve as for a closed port, so the name is looked up again to tell the
 * two apart. A SQLite file that holds another program's tables is refused before the gateway's are
 * added to it.
 *
 * @module
 */
import { Database } from "bun:sqlite";
import { stat } from "node:fs/promises";
import { statSync } from "node:fs";
import { dirname } from "node:path";
import { lookup } from "node:dns/promises";
import { peekPostgresMeta, PostgresStore, unreachableWhy } from "./postgres.ts";
import { SqliteStore } from "./sqlite.ts";
import type { Store } from "./types.ts";
import { migratedLine } from "./_migrations.ts";
import { shownUrl } from "../../lib/net/shown-url.ts";

/** The --db given cannot be used; nothing was created in it. */
export class StoreOpenError extends Error {
  override name = "StoreOpenError";
  /** PostgreSQL's SQLSTATE when the server refused (3D000: no such database), for a caller with other advice. */
  constructor(
    message: string,
    readonly sqlState?: string,
  ) {
    super(message);
  }
}

/** What to do about a refused connection or a PostgreSQL refusal at start, by Bun's code or SQLSTATE. */
function postgresAdvice(e: { code?: unknown; errno?: unknown }, url: URL | null): string {
  const user = decodeURIComponent(url?.username || "") || "the user";
  const db = decodeURIComponent(url?.pathname.slice(1) || "") || "the database";
  if (e.code === "ERR_POSTGRES_CONNECTION_REFUSED") return " (is PostgreSQL running there?)";
  switch (e.errno) {
    case "28P01":
    case "28000":
      return " (check the user and password in --db; a password may also come from PGPASSWORD)";
    case "3D000":
      return ` (create it first: createdb -O ${user} ${db}, or CREATE DATABASE ${db} OWNER ${user})`;
    case "42501":
      return ` (the gateway creates its tables at start: make ${user} the owner of ${db} (ALTER DATABASE ${db} OWNER TO ${user}) or GRANT CREATE ON SCHEMA public TO ${user})`;
    default:
      return "";
  }
}

/**
 * The host of a postgres:// URL when its name cannot be resolved, else undefined. Bun.SQL throws
 * ERR_POSTGRES_CONNECTION_REFUSED ("Failed to connect") for an unresolvable name and a closed
 * port alike (Bun 1.4.5), so after a connection fails the name is looked up once more.
 */
async function unresolvedHost(e: { code?: unknown }, url: URL | null): Promise<string | undefined> {
  if (typeof e.code !== "string" || !e.code.startsWith("ERR_POSTGRES_CONNECTION")) return undefined;
  const host = url?.hostname.replace(/^\[(.*)\]$/, "$1");
  if (!host) return undefined;
  return lookup(host).then(
    () => undefined,
    () => host,
  );
}

/** What a --db names: a PostgreSQL URL, a SQLite file path, or (a URL of another scheme) neither. */
export function dbKind(db: string): "postgres" | "sqlite" | undefined {
  if (/^postgres(ql)?:\/\//.test(db)) return "postgres";
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(db) ? undefined : "sqlite";
}

/** The words for a --db that {@link dbKind} says is neither. */
export const dbKindProblem = (db: string) => `Cannot use --db ${shownUrl(db)}: give a postgres:// URL or a SQLite file path`;

/**
 * Why an existing SQLite file is not one to open as the gateway's database: it is not SQLite, or it
 * holds tables and none of the gateway's (another program's database, named by mistake). Undefined
 * for a missing or empty file, or a gateway's database.
 */
function notAGatewaySqlite(path: string): string | undefined {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st?.isFile() || st.size === 0) return undefined;
  let db: Database | undefined;
  try {
    db = new Database(path, { readonly: true });
    const tables = (db.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[]).map((r) => r.name);
    if (!tables.length || (tables.includes("schema_migrations") && tables.includes("devices"))) return undefined;
    const shown = tables.slice(0, 5).join(", ") + (tables.length > 5 ? `, ... (${tables.length} tables)` : "");
    return `it is another program's database (tables ${shown}), not a gateway's; nothing was written to it. Give a new file name, or the gateway's own database`;
  } catch (e) {
    if ((e as { code?: string }).code === "SQLITE_NOTADB") return "it is not a SQLite database; nothing was written to it. Give a new file name, or the gateway's own database";
    return undefined; // said by SqliteStore.open's own error below
  } finally {
    db?.close();
  }
}

/**
 * Whether the SQLite file at `path` holds no table at all (a file cut to 0 bytes, or a database
 * something made and never filled), read without writing anything (its -wal read too). False for
 * a file that cannot be opened: its own error is said where it is opened.
 */
export function sqliteHoldsNothing(path: string): boolean {
  let db: Database | undefined;
  try {
    db = new Database(path, { readonly: true });
    return db.query("SELECT 1 FROM sqlite_master WHERE type = 'table' LIMIT 1").get() === null;
  } catch {
    return false;
  } finally {
    db?.close();
  }
}

const sqlStateOf = (e: unknown) => {
  const errno = (e as { errno?: unknown } | undefined)?.errno;
  return typeof errno === "string" ? errno : undefined;
};

/** A PostgreSQL --db that could not be opened, said with the database (password masked), why and what to do. */
async function postgresOpenError(db: string, e: unknown): Promise<never> {
  const url = URL.parse(db);
  const host = await unresolvedHost(e as object, url);
  if (host !== undefined)
    throw new StoreOpenError(
      `Cannot use the database ${shownUrl(db)}: the host name ${host} could not be resolved (check the host in --db, and that this machine's DNS or /etc/hosts knows it)`,
    );
  const why = unreachableWhy(e) ?? (e as Error).message;
  throw new StoreOpenError(`Cannot use the database ${shownUrl(db)}: ${why}${postgresAdvice(e as object, url)}`, sqlStateOf(e));
}

/**
 * The gateway_meta key that binds a database to the CA of the data dir it serves (and with it its
 * TUF keys): `serve` claims it at its first start and refuses a database "created by a gateway with
 * another CA"; a backup reads it to check its --db, never writes it.
 */
export const CA_FINGERPRINT_META = "ca_fingerprint";

/**
 * The value a PostgreSQL --db holds under `key` in its gateway_meta (`ca_fingerprint`: the CA the
 * database is bound to), read without writing anything: undefined for an empty database.
 *
 * @throws {StoreOpenError} A database that cannot be reached, said as {@link openStore} says it.
 */
export function peekDatabaseMeta(db: string, key: string): Promise<string | undefined> {
  return peekPostgresMeta(db, key).catch((e) => postgresOpenError(db, e));
}

/**
 * @param opts.log Where a PostgreSQL store logs an outage's first and last lines (stderr), and
 *   where a start that migrated the database says so (either store).
 * @throws {StoreOpenError} A database that cannot be reached or opened, or a URL of another scheme.
 */
export async function openStore(db: string, opts: { log?: (line: string) => void } = {}): Promise<Store> {
  const store = await openKind(db, opts);
  // Said at once: a start that fails after this (a locked data dir, a CA mix-up) has migrated all the
  // same, and the next start has nothing left to migrate, so it would never be said.
  const migrated = migratedLine(store.migrated);
  if (migrated) opts.log?.(migrated);
  return store;
}

async function openKind(db: string, opts: { log?: (line: string) => void }): Promise<Store> {
  const kind = dbKind(db);
  if (kind === "postgres") return PostgresStore.connect(db, opts.log ? { log: opts.log } : {}).catch((e) => postgresOpenError(db, e));

  if (!kind) throw new StoreOpenError(dbKindProblem(db));
  const foreign = notAGatewaySqlite(db);
  if (foreign) throw new StoreOpenError(`Cannot use ${db} as the gateway's database: ${foreign}`);
  try {
    return SqliteStore.open(db);
  } catch (e) {
    const dir = await stat(dirname(db)).catch(() => undefined);
    const st = await stat(db).catch(() => undefined);
    const why = !dir ? `its directory ${dirname(db)} does not exist` : st?.isDirectory() ? "it is a directory" : (e as Error).message;
    throw new StoreOpenError(`Cannot open the SQLite database ${db}: ${why}`);
  }
}
