/** Opens the store named by --db: a postgres:// URL, or a sqlite file path. */
import { PostgresStore } from "./postgres.ts";
import { SqliteStore } from "./sqlite.ts";
import type { Store } from "./types.ts";

export async function openStore(db: string): Promise<Store> {
  if (/^postgres(ql)?:\/\//.test(db)) return PostgresStore.connect(db);
  return SqliteStore.open(db);
}
