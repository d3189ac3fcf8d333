/**
 * The compose apps of the current signed targets.json, read from the gateway's database for
 * `gateway registry gc --untargeted`, which runs beside `gateway serve` or without it. The
 * database is only read, with one query: SqliteStore.open and PostgresStore.connect would migrate
 * it (under a running gateway of another version) and start writers and watchers a one-shot
 * reader has no use for. The data dir says which kind it was served with (data-dir.ts).
 *
 * @module
 */
import { Database } from "bun:sqlite";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { servedDatabaseKind, SQLITE_DB_FILE } from "../data-dir.ts";
import { SQL } from "bun";
import { dbKind } from "../store/open.ts";
import { unreachableWhy } from "../store/postgres.ts";
import { shownUrl } from "../../lib/net/shown-url.ts";
import type { TargetApp } from "./untargeted.ts";

/** The targets could not be read: nothing was removed. */
export class TargetsUnreadableError extends Error {
  override name = "TargetsUnreadableError";
  constructor(where: string, why: string, todo: string) {
    super(`Cannot read the current targets from ${where}: ${why}. Nothing was removed; ${todo}`);
  }
}

/** The latest signed targets.json, as the stores' TufStorage.getLatest("targets") reads it. */
const TARGETS_QUERY = "SELECT json FROM tuf_metadata WHERE role = 'targets' ORDER BY version DESC LIMIT 1";


async function latestTargetsJson(dataDir: string, db: string | undefined): Promise<{ json: string; where: string }> {
  const kind = db ? dbKind(db) : await servedDatabaseKind(dataDir);
  if (kind === "postgres") {
    if (!db) throw new TargetsUnreadableError(dataDir, "it is served with a PostgreSQL database", "give the same --db postgres://... gateway serve has");
    const sql = new SQL({ url: db, max: 1 });
    try {
      const rows = (await sql.unsafe(TARGETS_QUERY)) as { json: string }[];
      if (!rows[0]) throw new TargetsUnreadableError(shownUrl(db), "it holds no signed targets.json", "is it this gateway's database?");
      return { json: rows[0].json, where: shownUrl(db) };
    } catch (e) {
      if (e instanceof TargetsUnreadableError) throw e;
      throw new TargetsUnreadableError(shownUrl(db), unreachableWhy(e) ?? (e as Error).message, "check --db: gateway serve's, a gateway database");
    } finally {
      await sql.close();
    }
  }
  if (db && kind === undefined) throw new TargetsUnreadableError(db, "it is neither a postgres:// URL nor a file path", "give gateway serve's --db");
  const path = db ?? join(dataDir, SQLITE_DB_FILE);
  if (!existsSync(path)) throw new TargetsUnreadableError(path, "no such file", "give gateway serve's --db if it is elsewhere");
  let sqlite: Database | undefined;
  try {
    sqlite = new Database(path, { readonly: true });
    const row = sqlite.query<{ json: string }, []>(TARGETS_QUERY).get();
    if (!row) throw new TargetsUnreadableError(path, "it holds no signed targets.json", "is it this gateway's database?");
    return { json: row.json, where: path };
  } catch (e) {
    if (e instanceof TargetsUnreadableError) throw e;
    throw new TargetsUnreadableError(path, (e as Error).message, "give gateway serve's --db, a readable gateway database");
  } finally {
    sqlite?.close();
  }
}

/**
 * Every compose app every target of the latest signed targets.json names (all hardware ids).
 *
 * @param db gateway serve's --db; default the data dir's SQLite file (refused for a data dir served with PostgreSQL).
 * @throws {TargetsUnreadableError} The database cannot be read, holds no targets.json, or a target is malformed.
 */
export async function currentTargetApps(dataDir: string, db?: string): Promise<TargetApp[]> {
  const { json, where } = await latestTargetsJson(dataDir, db);
  const bad = (why: string) => new TargetsUnreadableError(where, why, "the targets.json there is not one gateway serve signed");
  let targets: unknown;
  try {
    targets = JSON.parse(json)?.signed?.targets;
  } catch (e) {
    throw bad(`its targets.json is not JSON (${(e as Error).message})`);
  }
  if (!targets || typeof targets !== "object") throw bad("its targets.json has no signed.targets");
  const apps: TargetApp[] = [];
  for (const [target, entry] of Object.entries(targets as Record<string, any>)) {
    const composeApps = entry?.custom?.docker_compose_apps ?? {};
    if (typeof composeApps !== "object") throw bad(`target ${target} has a docker_compose_apps that is not an object`);
    for (const [app, ref] of Object.entries(composeApps as Record<string, any>)) {
      if (typeof ref?.uri !== "string") throw bad(`target ${target} app ${app} has no uri`);
      apps.push({ target, app, uri: ref.uri });
    }
  }
  return apps;
}
