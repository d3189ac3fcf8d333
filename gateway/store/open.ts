/**
 * Opens the store named by --db: a postgres:// URL, or a SQLite file path. One that cannot be
 * opened is said with the database (password masked) and why: Bun says only "Failed to connect"
 * or "unable to open database file", and a URL of another scheme would be taken for a file name.
 *
 * @module
 */
import { stat } from "node:fs/promises";
import { dirname } from "node:path";
import { PostgresStore } from "./postgres.ts";
import { SqliteStore } from "./sqlite.ts";
import type { Store } from "./types.ts";
import { shownUrl } from "../../lib/net/shown-url.ts";

/** The --db given cannot be used; nothing was created in it. */
export class StoreOpenError extends Error {
  override name = "StoreOpenError";
}

const PG_WHY: Record<string, string> = {
  ERR_POSTGRES_CONNECTION_REFUSED: "connection refused (is PostgreSQL running there?)",
  ERR_POSTGRES_CONNECTION_TIMEOUT: "no answer in time",
};

/** What a --db names: a PostgreSQL URL, a SQLite file path, or (a URL of another scheme) neither. */
export function dbKind(db: string): "postgres" | "sqlite" | undefined {
  if (/^postgres(ql)?:\/\//.test(db)) return "postgres";
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(db) ? undefined : "sqlite";
}

/** The words for a --db that {@link dbKind} says is neither. */
export const dbKindProblem = (db: string) => `Cannot use --db ${shownUrl(db)}: give a postgres:// URL or a SQLite file path`;

/** @throws {StoreOpenError} A database that cannot be reached or opened, or a URL of another scheme. */
export async function openStore(db: string): Promise<Store> {
  const kind = dbKind(db);
  if (kind === "postgres") {
    try {
      return await PostgresStore.connect(db);
    } catch (e) {
      const why = PG_WHY[(e as { code?: string }).code ?? ""] ?? (e as Error).message;
      throw new StoreOpenError(`Cannot use the database ${shownUrl(db)}: ${why}`);
    }
  }
  if (!kind) throw new StoreOpenError(dbKindProblem(db));
  try {
    return SqliteStore.open(db);
  } catch (e) {
    const dir = await stat(dirname(db)).catch(() => undefined);
    const st = await stat(db).catch(() => undefined);
    const why = !dir ? `its directory ${dirname(db)} does not exist` : st?.isDirectory() ? "it is a directory" : (e as Error).message;
    throw new StoreOpenError(`Cannot open the SQLite database ${db}: ${why}`);
  }
}
