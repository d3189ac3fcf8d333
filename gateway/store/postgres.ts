/**
 * The scale-out store: PostgreSQL through Bun.SQL (`--db postgres://...`).
 * Several gateways may share one database; migrations take an advisory lock
 * so concurrent first starts do not race.
 *
 * While PostgreSQL cannot be reached (down, restarting, a failover, its connections used up), every
 * statement fails at once with {@link DatabaseUnreachableError}, a StoreUnavailableError: the
 * gateway answers 503 with `Retry-After` and the device keeps its data for later. Bun's pool
 * connects again by itself once PostgreSQL answers. The outage is logged once when it begins and
 * once when the first statement succeeds again, not once per failed statement.
 *
 * @module
 */
import { SQL } from "bun";
import type { AppsStates, DeviceEvent } from "../../lib/api/index.ts";
import { TufVersionConflictError, type RoleName, type TufRecord, type TufStorage } from "../ota/storage.ts";
import { checkSchemaUsable, MIGRATIONS, MIGRATIONS_TABLE, SCHEMA_NEEDED_KEY, schemaMigrated, schemaNeeded, splitStatements, type SchemaMigrated } from "./_migrations.ts";
import { POSTGRES, QUERIES_PER_READ, matchesOf, queriesMatchingSql, queryDevicesSql, searchSql, summarySql, toFleetDevice, type StatusRecord } from "./_search.ts";
import {
  EVIDENCE_EVENTS,
  EVIDENCE_MEMBERS,
  GATING_ROLLOUTS_SQL,
  chunks,
  eventsOf,
  isActiveRolloutConflict,
  mergeLabels,
  rolloutColumns,
  toEvidence,
  toGroup,
  toRollout,
  toRolloutDevice,
  toRolloutEvent,
  type EvidenceEventRecord,
  type EvidenceMemberRecord,
  type GroupRecord,
  rolloutDeviceConds,
  type RolloutDeviceRecord,
  type RolloutEventRecord,
  type RolloutRecord,
} from "./_rollouts.ts";
import { eventQueueBound, stateWritesBound, type WaitingWrites } from "./_waiting-writes.ts";
import { clampLimit, eventBody, jsonColumn, newDeviceParams, replacesSql, storedJson, toApiToken, toDevice, toToken, type ApiTokenRecord, type DeviceRecord, type TokenRecord } from "./_rows.ts";
import {
  DeviceRegisteredMeanwhileError,
  DeviceRevokedError,
  TokenUsedUpError,
  GroupExistsError,
  RolloutConflictError,
  type FleetQuery,
  type GroupRow,
  type RolloutCount,
  type RolloutDeviceChange,
  type RolloutDeviceFilter,
  type RolloutEventRow,
  type RolloutMember,
  type RolloutPatch,
  type NewRollout,
  type ApiTokenRow,
  type DeviceRow,
  type DeviceSearch,
  type FleetCounts,
  type ListOptions,
  type NewDevice,
  type NewRegistrationToken,
  type Sighting,
  type Store,
  type StoredEvent,
  type SystemInfoKind,
  StoreUnavailableError,
} from "./types.ts";
import { shownUrl } from "../../lib/net/shown-url.ts";

/** Arbitrary constant: the advisory lock id that serialises migrations. */
const MIGRATION_LOCK = 7_340_001;

/** Bun's words for a connection that could not be made or was lost, in the operator's words. */
const CONNECTION_WHY: Record<string, string> = {
  ERR_POSTGRES_CONNECTION_REFUSED: "connection refused",
  ERR_POSTGRES_CONNECTION_CLOSED: "connection closed",
  ERR_POSTGRES_CONNECTION_TIMEOUT: "no answer in time",
  ERR_POSTGRES_CONNECTION_FAILED: "cannot connect",
};

/**
 * Why a statement failed, when it failed because PostgreSQL cannot be reached rather than for the
 * statement itself: no connection (refused, closed, timed out), a connection exception (SQLSTATE
 * class 08), the server shutting down or starting up (57P01-57P03), or no connection slot left
 * (53300). Undefined for any other failure.
 */
export function unreachableWhy(err: unknown): string | undefined {
  const e = err as { code?: unknown; errno?: unknown; message?: unknown };
  if (typeof e.code === "string" && CONNECTION_WHY[e.code]) return CONNECTION_WHY[e.code];
  if (typeof e.code === "string" && e.code.startsWith("ERR_POSTGRES_CONNECTION")) return String(e.message);
  if (typeof e.errno === "string" && /^(08|57P0[123]$|53300$)/.test(e.errno)) return String(e.message);
  return undefined;
}

/**
 * A statement failed because PostgreSQL cannot be reached (see {@link unreachableWhy}): answered
 * 503 with `Retry-After` (app.ts), as a restarting SQLite writer is. Nothing of the request was
 * stored unless its statement committed before the connection was lost; retrying is safe (events
 * are deduplicated by id, the other device writes are upserts).
 */
export class DatabaseUnreachableError extends StoreUnavailableError {
  override name = "DatabaseUnreachableError";
  constructor(why: string, cause: unknown) {
    super(`Cannot reach the gateway's database (${why}): try again later`);
    this.cause = cause;
  }
}

/**
 * Whether PostgreSQL is reachable, as the statements find it: the first failure for want of it
 * starts an outage (logged once), the first success after it ends it (logged once, with how long).
 */
export class DatabaseOutage {
  #since: number | undefined;
  #failed = 0;

  constructor(
    /** The database as logs show it (password masked). */
    private readonly shown: string,
    private readonly log: (line: string) => void,
  ) {}

  /** Since when PostgreSQL has been unreachable (ms since the epoch), or undefined while it answers. */
  get since(): number | undefined {
    return this.#since;
  }

  /** The statement's outcome; a failure for want of PostgreSQL becomes a {@link DatabaseUnreachableError}. */
  watch<T>(statement: PromiseLike<T>): Promise<T> {
    return Promise.resolve(statement).then(
      (r) => {
        if (this.#since !== undefined) this.#back();
        return r;
      },
      (err) => {
        const why = unreachableWhy(err);
        if (why === undefined) throw err;
        this.#failed++;
        if (this.#since === undefined) {
          this.#since = Date.now();
          this.log(
            `gateway: cannot reach the database ${this.shown}: ${why}; device requests that need it are answered 503 with Retry-After, ` +
              "and the gateway reconnects by itself once it answers",
          );
        }
        throw new DatabaseUnreachableError(why, err);
      },
    );
  }

  #back(): void {
    const seconds = Math.round((Date.now() - this.#since!) / 1000);
    this.log(`gateway: the database ${this.shown} answers again, after ${seconds} s unreachable (${this.#failed} statements failed meanwhile)`);
    this.#since = undefined;
    this.#failed = 0;
  }
}

/** `sql` whose statements (`unsafe`, `begin`) go through `outage.watch`; everything else as is. */
function watched(sql: SQL, outage: DatabaseOutage): SQL {
  return new Proxy(sql, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      if (prop === "unsafe" || prop === "begin") return (...args: unknown[]) => outage.watch((value as (...a: unknown[]) => PromiseLike<unknown>).apply(target, args));
      return value.bind(target);
    },
  });
}

/** How long a migration waits for a table another session holds, in seconds (GATEWAY_MIGRATION_LOCK_WAIT_S, for tests; read at each start). */
const migrationLockWaitS = () => Math.max(1, Math.floor(Number(process.env.GATEWAY_MIGRATION_LOCK_WAIT_S) || 10));

/** A migration gave up waiting for a table another session holds (nothing was changed). */
export class MigrationBlockedError extends Error {
  override name = "MigrationBlockedError";
}

const migrationLockMessage = (n: number) =>
  `Cannot update the database schema (${n} migration${n === 1 ? "" : "s"}): a table ${n === 1 ? "it changes" : "they change"} was held by another session for more than ${migrationLockWaitS()} s ` +
  "(a pg_dump for a backup, a long query): nothing was changed, and the replicas running serve on. Start this one again once that session is done";

/**
 * Creates or updates the schema, one gateway at a time (an advisory lock held by the transaction).
 * @throws {DatabaseTooNewError} A newer gateway's schema this one cannot use (checked before anything is written).
 */
async function migrate(sql: SQL): Promise<SchemaMigrated | undefined> {
  return sql.begin(async (tx) => {
    await tx.unsafe("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
    await tx.unsafe(MIGRATIONS_TABLE);
    const applied = new Set(
      ((await tx.unsafe("SELECT version FROM schema_migrations")) as { version: number }[]).map((r) => Number(r.version)),
    );
    // gateway_meta is migration 2.
    const stored = applied.has(2)
      ? ((await tx.unsafe("SELECT value FROM gateway_meta WHERE key = $1", [SCHEMA_NEEDED_KEY])) as { value: string }[])[0]?.value
      : undefined;
    checkSchemaUsable(applied, stored);
    const pending = MIGRATIONS.filter((m) => !applied.has(m.version));
    // A migration's ALTER waits for a table lock that another session may hold for minutes (a
    // pg_dump holds every table it reads), and every replica's statements on that table queue
    // behind the waiting ALTER: the fleet stalls. Bounded, this start fails instead, changing nothing.
    if (pending.length) await tx.unsafe(`SET LOCAL lock_timeout = '${migrationLockWaitS()}s'`);
    for (const m of pending) {
      try {
        for (const stmt of splitStatements(m.postgres)) await tx.unsafe(stmt);
      } catch (err) {
        if ((err as { errno?: unknown }).errno === "55P03") throw new MigrationBlockedError(migrationLockMessage(pending.length), { cause: err });
        throw err;
      }
      await tx.unsafe("INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)", [
        m.version,
        m.description,
        new Date().toISOString(),
      ]);
    }
    const needed = schemaNeeded(stored);
    if (needed !== stored)
      await tx.unsafe("INSERT INTO gateway_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value", [SCHEMA_NEEDED_KEY, needed]);
    return schemaMigrated(applied, stored);
  });
}

/**
 * The value stored under `key` in the gateway_meta table of the database at `url`, read without
 * writing anything there (no migration, no schema): undefined when the database holds no gateway's
 * tables or no such key. What a start asks before it makes an empty database its own.
 */
export async function peekPostgresMeta(url: string, key: string): Promise<string | undefined> {
  const sql = new SQL({ url, max: 1 });
  try {
    const [table] = (await sql.unsafe("SELECT to_regclass('gateway_meta') AS t")) as { t: string | null }[];
    if (!table?.t) return undefined;
    const rows = (await sql.unsafe("SELECT value FROM gateway_meta WHERE key = $1", [key])) as { value: string }[];
    return rows[0]?.value;
  } finally {
    await sql.close();
  }
}

export class PostgresStore implements Store {
  readonly kind = "postgres";
  migrated: SchemaMigrated | undefined;
  readonly #sql: SQL;
  readonly tuf: TufStorage;
  readonly #events: EventGroupCommit;
  /** Apps-states and system-info upserts waiting for a connection of the pool or for PostgreSQL's answer. */
  readonly #stateWrites: WaitingWrites;
  /** Whether PostgreSQL answers, as the last statements found it. */
  readonly outage: DatabaseOutage;

  private constructor(sql: SQL, outage: DatabaseOutage, opts: { eventQueueMax?: number; stateWritesMax?: number }) {
    this.#sql = sql;
    this.outage = outage;
    this.tuf = new PostgresTufStorage(sql);
    this.#events = new EventGroupCommit(sql, undefined, undefined, opts.eventQueueMax);
    this.#stateWrites = stateWritesBound(opts.stateWritesMax);
  }

  /**
   * Connects and migrates. `max`: pool connections (16); `eventQueueMax`: events waiting to be
   * sent at most (EVENT_QUEUE_MAX, ./_waiting-writes.ts); `stateWritesMax`: apps-states and system-info
   * upserts waiting at most (STATE_WRITES_MAX); `log`: where an outage's first and last lines go
   * (stderr). The migrations run before the outage watch: a database unreachable at start is
   * PostgreSQL's own error, for openStore to say.
   */
  static async connect(
    url: string,
    opts: { max?: number; eventQueueMax?: number; stateWritesMax?: number; log?: (line: string) => void } = {},
  ): Promise<PostgresStore> {
    const sql = new SQL({ url, max: opts.max ?? 16 });
    let migrated: SchemaMigrated | undefined;
    try {
      migrated = await migrate(sql);
    } catch (err) {
      await sql.close();
      throw err;
    }
    const outage = new DatabaseOutage(shownUrl(url), opts.log ?? ((line) => process.stderr.write(line + "\n")));
    const store = new PostgresStore(watched(sql, outage), outage, opts);
    store.migrated = migrated;
    return store;
  }

  async close() {
    await this.#events.drained();
    await this.#sql.close();
  }

  async putDevice(d: NewDevice): Promise<DeviceRow> {
    // One transaction: the token's use is given back when the write is refused (NewDevice.spendsUseOf).
    return this.#sql.begin(async (tx) => {
      if (d.spendsUseOf !== undefined && !(await claimTokenUse(tx, d.spendsUseOf, new Date().toISOString()))) throw new TokenUsedUpError(d.spendsUseOf);
      const rows = (await tx.unsafe(
        `INSERT INTO devices (uuid, name, hardware_id, factory, tags, cert_serial, created_at, apps, tags_from_device, key_sha256)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (uuid) DO UPDATE SET name = excluded.name, hardware_id = excluded.hardware_id,
           factory = excluded.factory, tags = excluded.tags, cert_serial = excluded.cert_serial, apps = excluded.apps,
           tags_from_device = excluded.tags_from_device, key_sha256 = excluded.key_sha256
         WHERE devices.revoked_at IS NULL${replacesSql(d.replaces, "$11")}
         RETURNING *`,
        newDeviceParams(d),
      )) as DeviceRecord[];
      if (rows[0]) return toDevice(rows[0]);
      // Not written: revoked, or (with `replaces`) registered otherwise meanwhile.
      const now = (await tx.unsafe("SELECT * FROM devices WHERE uuid = $1", [d.uuid])) as DeviceRecord[];
      if (!now[0] || now[0].revoked_at) throw new DeviceRevokedError(d.uuid);
      throw new DeviceRegisteredMeanwhileError(d.uuid);
    });
  }

  async getDevice(uuid: string) {
    const rows = (await this.#sql.unsafe("SELECT * FROM devices WHERE uuid = $1", [uuid])) as DeviceRecord[];
    return rows[0] ? toDevice(rows[0]) : undefined;
  }

  async getDevices(uuids: readonly string[]) {
    const rows = (await this.#sql.unsafe("SELECT * FROM devices WHERE uuid = ANY($1::text[])", [[...new Set(uuids)]])) as DeviceRecord[];
    return new Map(rows.map((r) => [r.uuid, toDevice(r)] as const));
  }

  async deviceKeySha256(uuid: string) {
    const rows = (await this.#sql.unsafe("SELECT key_sha256 FROM devices WHERE uuid = $1", [uuid])) as { key_sha256: string | null }[];
    return rows[0]?.key_sha256;
  }

  async listDevices(opts: ListOptions = {}) {
    const rows = (await this.#sql.unsafe("SELECT * FROM devices WHERE uuid > $1 ORDER BY uuid LIMIT $2", [
      opts.after ?? "",
      clampLimit(opts.limit),
    ])) as DeviceRecord[];
    return rows.map(toDevice);
  }

  async countDevices() {
    const rows = (await this.#sql.unsafe("SELECT count(*)::int AS n FROM devices")) as { n: number }[];
    return Number(rows[0]!.n);
  }
  async runningTargets() {
    const rows = (await this.#sql.unsafe("SELECT DISTINCT current_target AS t FROM devices WHERE current_target IS NOT NULL AND revoked_at IS NULL")) as { t: string }[];
    return rows.map((r) => r.t);
  }
  async searchDevices(search: DeviceSearch) {
    const q = searchSql(POSTGRES, search);
    const [rows, counts] = await Promise.all([
      this.#sql.unsafe(q.page.sql, q.page.params) as Promise<StatusRecord[]>,
      q.count ? (this.#sql.unsafe(q.count.sql, q.count.params) as Promise<Record<"n" | "revoked" | "reported_only", bigint | string | number | null | undefined>[]>) : undefined,
    ]);
    const devices = rows.map(toFleetDevice);
    if (!counts) return { devices };
    const c = counts[0]!;
    // count() is a bigint, which the driver gives as text.
    return {
      devices,
      total: Number(c.n),
      ...(c.revoked != null ? { revoked: Number(c.revoked) } : {}),
      ...(c.reported_only != null ? { reportedOnly: Number(c.reported_only) } : {}),
    };
  }

  async fleetSummary(offlineBefore: string, failures = 10): Promise<FleetCounts> {
    const q = summarySql(POSTGRES);
    const [statuses, versions, recent] = await Promise.all([
      this.#sql.unsafe(q.byStatus.replace("count(*)", "count(*)::int"), [offlineBefore]) as Promise<{ s: string; n: number }[]>,
      this.#sql.unsafe(q.versions.replace("count(*)", "count(*)::int")) as Promise<{ target: string | null; n: number }[]>,
      this.#sql.unsafe(q.failures, [offlineBefore, failures]) as Promise<StatusRecord[]>,
    ]);
    const byStatus = Object.fromEntries(statuses.map((r) => [r.s, Number(r.n)]));
    return {
      total: Object.values(byStatus).reduce((a, b) => a + b, 0),
      byStatus,
      versions: versions.map((r) => ({ target: r.target, devices: Number(r.n) })),
      recentFailures: recent.map(toFleetDevice),
    };
  }


  async revokeDevice(uuid: string, at: string) {
    const rows = await this.#sql.unsafe(
      "UPDATE devices SET revoked_at = coalesce(revoked_at, $1) WHERE uuid = $2 RETURNING uuid",
      [at, uuid],
    );
    return rows.length > 0;
  }

  async setDeviceTags(uuid: string, tags: string[]) {
    const rows = (await this.#sql.unsafe("UPDATE devices SET tags = $1 WHERE uuid = $2 RETURNING *", [
      JSON.stringify(tags),
      uuid,
    ])) as DeviceRecord[];
    return rows[0] ? toDevice(rows[0]) : undefined;
  }

  async setDeviceLabels(uuid: string, set: Record<string, string>, remove: string[], max?: number) {
    const update = async (q: SQL) => {
      // jsonb merge (||) then key removal (- text[]); jsonb keeps keys sorted itself.
      const rows = (await q.unsafe("UPDATE devices SET labels = (labels || $1::text::jsonb) - $2::text[] WHERE uuid = $3 RETURNING *", [
        JSON.stringify(set),
        remove,
        uuid,
      ])) as DeviceRecord[];
      return rows[0] ? toDevice(rows[0]) : undefined;
    };
    if (max === undefined) return update(this.#sql);
    // The cap is checked on the row locked (FOR UPDATE) until the write commits: two changes
    // racing on replicas wait for each other, and the second sees the first's labels.
    return this.#sql.begin(async (tx) => {
      const rows = (await tx.unsafe("SELECT labels FROM devices WHERE uuid = $1 FOR UPDATE", [uuid])) as Pick<DeviceRecord, "labels">[];
      if (!rows[0]) return undefined;
      mergeLabels(jsonColumn<Record<string, string>>(rows[0].labels, {}), set, remove, { uuid, max });
      return update(tx);
    });
  }

  async queryDevices(q: FleetQuery) {
    const w = queryDevicesSql(POSTGRES, q);
    const rows = (await this.#sql.unsafe(w.sql, w.params)) as { uuid: string }[];
    return rows.map((r) => r.uuid);
  }

  async queriesMatching(uuid: string, queries: FleetQuery[]) {
    const out: boolean[] = [];
    for (const part of chunks(queries, QUERIES_PER_READ)) {
      const w = queriesMatchingSql(POSTGRES, uuid, part);
      const [row] = (await this.#sql.unsafe(w.sql, w.params as never[])) as Record<string, unknown>[];
      out.push(...matchesOf(row, part.length));
    }
    return out;
  }

  async knownDevices(uuids: string[]) {
    const rows = (await this.#sql.unsafe("SELECT uuid, revoked_at FROM devices WHERE uuid = ANY($1::text[])", [[...new Set(uuids)]])) as {
      uuid: string;
      revoked_at: string | null;
    }[];
    // Sorted by code unit here, as the SQLite store does (a PostgreSQL collation may order uuids otherwise).
    return rows
      .map((r) => ({ uuid: r.uuid, revokedAt: r.revoked_at }))
      .sort((a, b) => (a.uuid < b.uuid ? -1 : a.uuid > b.uuid ? 1 : 0));
  }

  async createGroup(g: GroupRow) {
    const rows = await this.#sql.unsafe(
      "INSERT INTO device_groups (name, kind, query, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING RETURNING name",
      [g.name, g.kind, g.query, g.createdAt],
    );
    if (!rows.length) throw new GroupExistsError(g.name);
  }

  async getGroup(name: string) {
    const rows = (await this.#sql.unsafe("SELECT * FROM device_groups WHERE name = $1", [name])) as GroupRecord[];
    return rows[0] ? toGroup(rows[0]) : undefined;
  }

  async listGroups() {
    const rows = (await this.#sql.unsafe("SELECT * FROM device_groups ORDER BY name")) as GroupRecord[];
    return rows.map(toGroup);
  }

  async deleteGroup(name: string) {
    const rows = await this.#sql.unsafe("DELETE FROM device_groups WHERE name = $1 RETURNING name", [name]);
    return rows.length > 0;
  }

  async addGroupMembers(name: string, uuids: string[]) {
    const rows = await this.#sql.unsafe(
      `INSERT INTO group_members (group_name, device_uuid)
       SELECT $1, uuid FROM devices WHERE uuid = ANY($2::text[]) ON CONFLICT DO NOTHING RETURNING device_uuid`,
      [name, [...new Set(uuids)]],
    );
    return rows.length;
  }

  async removeGroupMembers(name: string, uuids: string[]) {
    const rows = await this.#sql.unsafe(
      "DELETE FROM group_members WHERE group_name = $1 AND device_uuid = ANY($2::text[]) RETURNING device_uuid",
      [name, [...new Set(uuids)]],
    );
    return rows.length;
  }

  async listGroupMembers(name: string) {
    const rows = (await this.#sql.unsafe("SELECT device_uuid FROM group_members WHERE group_name = $1 ORDER BY device_uuid", [
      name,
    ])) as { device_uuid: string }[];
    return rows.map((r) => r.device_uuid);
  }

  async createRollout(row: NewRollout, members: RolloutMember[], events: Omit<RolloutEventRow, "id">[] = []) {
    const { columns, values } = rolloutColumns(row);
    try {
      await this.#sql.begin(async (tx) => {
        await tx.unsafe(`INSERT INTO rollouts (${columns.join(", ")}) VALUES (${columns.map((_, i) => `$${i + 1}`).join(", ")})`, values);
        // 10,000 members per statement: arrays zipped by unnest.
        for (const part of chunks(members, 10_000))
          await tx.unsafe(
            `INSERT INTO rollout_devices (rollout_id, device_uuid, wave, status, updated_at)
             SELECT $1, u, w, 'pending', $2 FROM unnest($3::text[], $4::int[]) AS m(u, w)`,
            [row.id, row.createdAt, part.map((m) => m.uuid), part.map((m) => m.wave)],
          );
        await insertRolloutEvents(tx, events);
      });
    } catch (err) {
      if (isActiveRolloutConflict(err)) throw new RolloutConflictError(row.targetVersion);
      throw err;
    }
  }

  async getRollout(id: string) {
    const rows = (await this.#sql.unsafe("SELECT * FROM rollouts WHERE id = $1", [id])) as RolloutRecord[];
    return rows[0] ? toRollout(rows[0]) : undefined;
  }

  async listRollouts(opts: { active?: boolean; limit?: number } = {}) {
    const where = opts.active ? "WHERE state IN ('running', 'paused', 'halted')" : "";
    const rows = (await this.#sql.unsafe(`SELECT * FROM rollouts ${where} ORDER BY created_at DESC, id DESC LIMIT $1`, [
      clampLimit(opts.limit),
    ])) as RolloutRecord[];
    return rows.map(toRollout);
  }

  async activeRollouts() {
    return this.listRollouts({ active: true });
  }

  async gatingRollouts() {
    return ((await this.#sql.unsafe(GATING_ROLLOUTS_SQL)) as RolloutRecord[]).map(toRollout);
  }

  async updateRollout(id: string, expectedRevision: number, patch: RolloutPatch, events: Omit<RolloutEventRow, "id">[] = []) {
    const { ifFailed, ...fields } = patch;
    const { columns, values } = rolloutColumns({ ...fields, updatedAt: patch.updatedAt ?? new Date().toISOString() });
    const n = values.length;
    const failed = ifFailed === undefined ? "" : `AND (SELECT count(*) FROM rollout_devices WHERE rollout_id = rollouts.id AND status = 'failed') = $${n + 3}`;
    const sql = `UPDATE rollouts SET ${columns.map((c, i) => `${c} = $${i + 1}`).join(", ")}, revision = revision + 1
       WHERE id = $${n + 1} AND revision = $${n + 2} ${failed} RETURNING *`;
    const run = async (tx: SQL) => {
      // The rollout's row first: the tick's verdicts (updateRolloutDevices holds it FOR SHARE) are
      // then all in, and the UPDATE's own snapshot, taken after, counts them; counted by an UPDATE
      // that waited for the row instead, they would be missed (its subquery reads from before).
      if (ifFailed !== undefined) await tx.unsafe("SELECT 1 FROM rollouts WHERE id = $1 FOR UPDATE", [id]);
      const rows = (await tx.unsafe(sql, [...values, id, expectedRevision, ...(ifFailed === undefined ? [] : [ifFailed])])) as RolloutRecord[];
      if (rows[0]) await insertRolloutEvents(tx, events);
      return rows[0];
    };
    const r = events.length || ifFailed !== undefined ? await this.#sql.begin(run) : await run(this.#sql);
    return r ? toRollout(r) : undefined;
  }

  async rolloutMembers(id: string) {
    const rows = (await this.#sql.unsafe(
      "SELECT device_uuid AS uuid, wave FROM rollout_devices WHERE rollout_id = $1 ORDER BY wave, device_uuid",
      [id],
    )) as { uuid: string; wave: number }[];
    return rows.map((r) => ({ uuid: r.uuid, wave: Number(r.wave) }));
  }

  async rolloutDeviceStates(id: string, opts: RolloutDeviceFilter & { limit?: number; after?: string } = {}) {
    const params: unknown[] = [];
    const p = (v: unknown) => (params.push(v), POSTGRES.param(params.length));
    const conds = [...rolloutDeviceConds(p, id, opts), `device_uuid > ${p(opts.after ?? "")}`];
    const rows = (await this.#sql.unsafe(
      `SELECT * FROM rollout_devices WHERE ${conds.join(" AND ")} ORDER BY device_uuid LIMIT ${p(clampLimit(opts.limit, 100_000))}`,
      params as never[],
    )) as RolloutDeviceRecord[];
    return rows.map(toRolloutDevice);
  }

  async countRolloutDevices(id: string, opts: RolloutDeviceFilter = {}) {
    const params: unknown[] = [];
    const conds = rolloutDeviceConds((v) => (params.push(v), POSTGRES.param(params.length)), id, opts);
    const [row] = (await this.#sql.unsafe(`SELECT count(*)::int AS n FROM rollout_devices WHERE ${conds.join(" AND ")}`, params as never[])) as { n: number }[];
    return Number(row!.n);
  }

  async updateRolloutDevices(id: string, changes: RolloutDeviceChange[], opts: { revision?: number; events?: Omit<RolloutEventRow, "id">[] } = {}) {
    const events = opts.events ?? [];
    if (!changes.length && !events.length) return true;
    const now = new Date().toISOString();
    // One statement for the batch; per field a "given" flag, so a change can clear it (null) or leave it alone.
    const given = (f: keyof RolloutDeviceChange) => changes.map((c) => (c[f] !== undefined ? 1 : 0));
    return this.#sql.begin(async (tx) => {
      if (opts.revision !== undefined) {
        // Shared: an operator's pause (updateRollout) waits until these changes are in, or wins before them.
        const rows = (await tx.unsafe("SELECT revision FROM rollouts WHERE id = $1 FOR SHARE", [id])) as { revision: number | string }[];
        if (Number(rows[0]?.revision) !== opts.revision) return false;
      }
      const changed = (await tx.unsafe(
        `UPDATE rollout_devices d SET
           status = CASE WHEN s.gs = 1 THEN s.status ELSE d.status END,
           reason = CASE WHEN s.gr = 1 THEN s.reason ELSE d.reason END,
           healthy_since = CASE WHEN s.gh = 1 THEN s.healthy ELSE d.healthy_since END,
           hold = CASE WHEN s.gd = 1 THEN s.hold ELSE d.hold END,
           updated_at = s.at
         FROM unnest($2::text[], $3::int[], $4::text[], $5::int[], $6::text[], $7::int[], $8::text[], $9::int[], $10::text[], $11::text[])
           AS s(uuid, gs, status, gr, reason, gh, healthy, gd, hold, at)
         WHERE d.rollout_id = $1 AND d.device_uuid = s.uuid AND d.status = 'pending'
         RETURNING d.device_uuid AS uuid`,
        [
          id,
          changes.map((c) => c.uuid),
          given("status"),
          changes.map((c) => c.status ?? null),
          given("reason"),
          changes.map((c) => c.reason ?? null),
          given("healthySince"),
          changes.map((c) => c.healthySince ?? null),
          given("hold"),
          changes.map((c) => (c.hold ? JSON.stringify(c.hold) : null)),
          changes.map((c) => c.updatedAt ?? now),
        ],
      )) as { uuid: string }[];
      // A member another writer settled first keeps its verdict, and its event is that writer's alone.
      const uuids = new Set(changed.map((r) => r.uuid));
      await insertRolloutEvents(tx, events.filter((e) => e.deviceUuid === null || uuids.has(e.deviceUuid)));
      return true;
    });
  }

  async rolloutCounts(id: string) {
    const rows = (await this.#sql.unsafe(
      "SELECT wave, status, count(*)::int AS devices FROM rollout_devices WHERE rollout_id = $1 GROUP BY wave, status ORDER BY wave, status",
      [id],
    )) as RolloutCount[];
    return rows.map((r) => ({ wave: Number(r.wave), status: r.status, devices: Number(r.devices) }));
  }

  async listRolloutEvents(id: string, opts: { limit?: number; device?: boolean } = {}) {
    const rows = (await this.#sql.unsafe(`SELECT * FROM rollout_events WHERE rollout_id = $1 ${eventsOf(opts.device)} ORDER BY id DESC LIMIT $2`, [
      id,
      clampLimit(opts.limit ?? 100, 10_000),
    ])) as RolloutEventRecord[];
    return rows.map(toRolloutEvent);
  }

  async pendingRolloutEvidence(id: string, maxWave: number) {
    // One snapshot for both reads, so an event and the status it set are seen together.
    return this.#sql.begin("ISOLATION LEVEL REPEATABLE READ READ ONLY", async (tx) => {
      const members = (await tx.unsafe(EVIDENCE_MEMBERS(POSTGRES), [id, maxWave])) as EvidenceMemberRecord[];
      const events = (await tx.unsafe(EVIDENCE_EVENTS(POSTGRES), [id, maxWave])) as EvidenceEventRecord[];
      return toEvidence(members, events);
    });
  }

  async recordSightings(batch: Sighting[]) {
    if (!batch.length) return;
    // One statement for the whole batch: the arrays are zipped by unnest. Tags from a check-in
    // count only for devices whose registration token let them choose; every device's are kept
    // as the tags it reports following (reported_tags, migration 39). The rows are locked first,
    // in uuid order, the order every statement that updates several devices takes (another
    // replica's sightings, the events group commit through its status trigger): without it two
    // such statements could each hold a row the other waits for, a deadlock PostgreSQL breaks only
    // after a second.
    await this.#sql.unsafe(
      `WITH s AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS s(uuid, at, tags, target, apps)),
       locked AS MATERIALIZED (SELECT d.uuid FROM devices d WHERE d.uuid IN (SELECT uuid FROM s) ORDER BY d.uuid COLLATE "C" FOR UPDATE OF d)
       UPDATE devices d SET last_seen = s.at,
         tags = CASE WHEN d.tags_from_device = 1 THEN coalesce(s.tags, d.tags) ELSE d.tags END, reported_tags = coalesce(s.tags, d.reported_tags),
         current_target = coalesce(s.target, d.current_target), apps = coalesce(s.apps, d.apps)
       FROM s JOIN locked USING (uuid)
       WHERE d.uuid = s.uuid`,
      [
        batch.map((s) => s.uuid),
        batch.map((s) => s.at),
        batch.map((s) => (s.tags ? JSON.stringify(s.tags) : null)),
        batch.map((s) => s.currentTarget ?? null),
        batch.map((s) => (s.apps ? JSON.stringify(s.apps) : null)),
      ],
    );
  }

  appendEvents(uuid: string, events: DeviceEvent[]): Promise<number> {
    return this.#events.append(uuid, events);
  }

  async listEvents(uuid: string, opts: { limit?: number } = {}): Promise<StoredEvent[]> {
    const rows = (await this.#sql.unsafe(
      "SELECT id, device_uuid, received_at, body FROM events WHERE device_uuid = $1 ORDER BY seq DESC LIMIT $2",
      [uuid, clampLimit(opts.limit, 10000)],
    )) as { id: string; device_uuid: string; received_at: string; body: string }[];
    // The newest, put back in arrival order.
    return rows.reverse().flatMap((r) => {
        // An event stored before the intake depth cap and nested too deep is left out of listings.
        const event = storedJson<DeviceEvent | undefined>(r.body, undefined);
        return event ? [{ id: r.id, deviceUuid: r.device_uuid, receivedAt: r.received_at, event }] : [];
      });
  }

  async countEvents() {
    const rows = (await this.#sql.unsafe("SELECT count(*)::int AS n FROM events")) as { n: number }[];
    return Number(rows[0]!.n);
  }

  async pruneEvents(before: string, limit: number): Promise<number> {
    // As SQLite's PRUNE_EVENTS_SQL (gateway/store/_writer-thread.ts), counted here rather than returned row by row.
    // The window's seqs as an array, not `seq IN (SELECT ...)`: for that PostgreSQL read every event for
    // `received_at < $1` and joined (87 ms a call on 1,000,000 events, a run's last call included); an
    // array it looks up in the primary key (5 ms).
    const rows = (await this.#sql.unsafe(
      `WITH gone AS (
         DELETE FROM events WHERE seq = ANY (ARRAY(SELECT seq FROM events WHERE received_at <= $3 ORDER BY seq LIMIT $2)) AND received_at < $1
         RETURNING 1
       ) SELECT count(*)::int AS n FROM gone`,
      [before, limit, new Date().toISOString()],
    )) as { n: number }[];
    return Number(rows[0]!.n);
  }

  async putAppsStates(uuid: string, states: AppsStates) {
    // Bounded while PostgreSQL stalls (StateWritesFullError, STATE_WRITES_MAX): the device sends it again.
    await this.#stateWrites.run("Cannot store apps-states", () =>
      this.#sql.unsafe(
        `INSERT INTO apps_states (device_uuid, body, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (device_uuid) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at`,
        [uuid, JSON.stringify(states), new Date().toISOString()],
      ),
    );
  }

  async getAppsStates(uuid: string) {
    const rows = (await this.#sql.unsafe("SELECT body FROM apps_states WHERE device_uuid = $1", [uuid])) as { body: string }[];
    return rows[0] ? storedJson<AppsStates | undefined>(rows[0].body, undefined) : undefined;
  }

  async putSystemInfo(uuid: string, kind: SystemInfoKind, value: unknown) {
    await this.#stateWrites.run(`Cannot store system info (${kind})`, () =>
      this.#sql.unsafe(
        `INSERT INTO system_info (device_uuid, kind, body, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (device_uuid, kind) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at`,
        [uuid, kind, JSON.stringify(value), new Date().toISOString()],
      ),
    );
  }

  async getSystemInfo(uuid: string) {
    const rows = (await this.#sql.unsafe("SELECT kind, body FROM system_info WHERE device_uuid = $1", [uuid])) as {
      kind: SystemInfoKind;
      body: string;
    }[];
    const out: Partial<Record<SystemInfoKind, unknown>> = {};
    for (const r of rows) out[r.kind] = storedJson(r.body);
    return out;
  }

  async tryLease(name: string, holder: string, ttlMs: number) {
    // Judged by the database's clock, the one all replicas share: a replica whose clock runs ahead
    // would otherwise take a live lease, and one behind would hold its own past its end.
    const rows = (await this.#sql.unsafe(
      `INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, ${isoText("now() + $3::float8 * interval '1 millisecond'")})
       ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
       WHERE leases.holder = excluded.holder OR leases.expires_at < ${isoText("now()")}
       RETURNING holder`,
      [name, holder, ttlMs],
    )) as { holder: string }[];
    return rows[0]?.holder === holder;
  }

  async releaseLease(name: string, holder: string) {
    await this.#sql.unsafe("DELETE FROM leases WHERE name = $1 AND holder = $2", [name, holder]);
  }

  async databaseClock() {
    const rows = (await this.#sql.unsafe(`SELECT ${isoText("clock_timestamp()")} AS t`)) as { t: string }[];
    return new Date(rows[0]!.t);
  }

  async claimMeta(key: string, value: string) {
    await this.#sql.unsafe("INSERT INTO gateway_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", [key, value]);
    const rows = (await this.#sql.unsafe("SELECT value FROM gateway_meta WHERE key = $1", [key])) as { value: string }[];
    return rows[0]!.value;
  }

  async readMeta(key: string) {
    const rows = (await this.#sql.unsafe("SELECT value FROM gateway_meta WHERE key = $1", [key])) as { value: string }[];
    return rows[0]?.value;
  }

  async forgetMeta(key: string, value: string) {
    const rows = (await this.#sql.unsafe("DELETE FROM gateway_meta WHERE key = $1 AND value = $2 RETURNING key", [key, value])) as unknown[];
    return rows.length > 0;
  }

  async createRegistrationToken(t: NewRegistrationToken) {
    await this.#sql.unsafe(
      `INSERT INTO registration_tokens (id, secret_hash, name, tags, hardware_id, created_at, expires_at, max_uses, allow_device_tags)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [t.id, t.secretHash, t.name, JSON.stringify(t.tags), t.hardwareId, t.createdAt, t.expiresAt, t.maxUses, t.allowDeviceTags ? 1 : 0],
    );
  }

  async listRegistrationTokens() {
    const rows = (await this.#sql.unsafe("SELECT * FROM registration_tokens ORDER BY created_at")) as TokenRecord[];
    return rows.map(toToken);
  }

  async getRegistrationTokenByHash(secretHash: string) {
    const rows = (await this.#sql.unsafe("SELECT * FROM registration_tokens WHERE secret_hash = $1", [
      secretHash,
    ])) as TokenRecord[];
    return rows[0] ? toToken(rows[0]) : undefined;
  }

  async claimTokenUse(id: string, now: string) {
    return claimTokenUse(this.#sql, id, now);
  }

  async revokeRegistrationToken(id: string, at: string) {
    const rows = await this.#sql.unsafe(
      "UPDATE registration_tokens SET revoked_at = coalesce(revoked_at, $1) WHERE id = $2 RETURNING id",
      [at, id],
    );
    return rows.length > 0;
  }

  async createApiToken(t: Omit<ApiTokenRow, "revokedAt">) {
    await this.#sql.unsafe(
      "INSERT INTO api_tokens (id, secret_hash, role, name, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
      [t.id, t.secretHash, t.role, t.name, t.createdAt, t.expiresAt],
    );
  }

  async listApiTokens() {
    const rows = (await this.#sql.unsafe("SELECT * FROM api_tokens ORDER BY created_at")) as ApiTokenRecord[];
    return rows.map(toApiToken);
  }

  async getApiTokenByHash(secretHash: string) {
    const rows = (await this.#sql.unsafe("SELECT * FROM api_tokens WHERE secret_hash = $1", [secretHash])) as ApiTokenRecord[];
    return rows[0] ? toApiToken(rows[0]) : undefined;
  }

  async getApiToken(id: string) {
    const rows = (await this.#sql.unsafe("SELECT * FROM api_tokens WHERE id = $1", [id])) as ApiTokenRecord[];
    return rows[0] ? toApiToken(rows[0]) : undefined;
  }

  async revokeApiToken(id: string, at: string) {
    const rows = await this.#sql.unsafe("UPDATE api_tokens SET revoked_at = coalesce(revoked_at, $1) WHERE id = $2 RETURNING id", [at, id]);
    return rows.length > 0;
  }
}

/**
 * Counts one use of a registration token, on a connection or inside a transaction. One UPDATE:
 * the row lock makes concurrent claims of the last use serialise, and the loser's re-checked
 * WHERE no longer matches.
 */
async function claimTokenUse(sql: SQL, id: string, now: string): Promise<boolean> {
  const rows = await sql.unsafe(
    `UPDATE registration_tokens SET uses = uses + 1
     WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2 AND (max_uses IS NULL OR uses < max_uses)
     RETURNING id`,
    [id, now],
  );
  return rows.length === 1;
}

/** Rollout events in one statement (arrays zipped by unnest), on a connection or inside a transaction. */
async function insertRolloutEvents(sql: SQL, events: Omit<RolloutEventRow, "id">[]) {
  if (!events.length) return;
  await sql.unsafe(
    `INSERT INTO rollout_events (rollout_id, at, kind, wave, device_uuid, reason)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[])`,
    [
      events.map((e) => e.rolloutId),
      events.map((e) => e.at),
      events.map((e) => e.kind),
      events.map((e) => e.wave),
      events.map((e) => e.deviceUuid),
      events.map((e) => e.reason),
    ],
  );
}

/** SQL for a timestamptz as the ISO text JavaScript's toISOString writes (leases.expires_at is TEXT, compared as text). */
function isoText(timestamptz: string): string {
  return `to_char((${timestamptz}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
}

/** Whether PostgreSQL refused a statement for its data (SQLSTATE class 22 or 23), not for a failure of its own or of the connection. */
function refusedForData(err: unknown): boolean {
  const state = (err as { errno?: unknown }).errno;
  return typeof state === "string" && /^2[23]/.test(state);
}

/** One device's POST /events waiting in EventGroupCommit's queue. */
interface QueuedEvents {
  uuid: string;
  events: DeviceEvent[];
  /** When it arrived (received_at of its events). */
  at: string;
  resolve: (stored: number) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit of device events: the events of concurrent POST /events go to PostgreSQL in one
 * INSERT (one transaction, one round trip, one wakeup of one backend) instead of one each. A
 * statement is sent while fewer than `inFlight` are running; whatever arrives meanwhile waits and
 * goes in the next one, so a lone check-in waits for nothing but the turn and a busy replica sends
 * a few large statements. Each caller is answered only after the statement holding its events has
 * committed (an acknowledged event is stored). The first statement of a quiet moment waits only for
 * the end of the event loop's turn, so the requests read in the same turn share it. It does not wait
 * a few ms for more while small statements go out often, as SQLite's writer does (./_event-writer.ts):
 * tried in bench/gateway-checkin (2026-12-04, PostgreSQL with fsync, 10,000 certificates), a 6 ms wait
 * while a statement ran and the last held under 8 events made 32 devices in flight kept alive 13-18%
 * slower (its second statement in flight no longer went at once) and a new connection per request
 * no faster beyond the rounds' spread (1,406 against 1,351 requests/s at best). If a statement of several devices fails, each
 * device's events are tried alone, so one device's bad row cannot fail another's request.
 *
 * The queue is bounded: while PostgreSQL stalls (a lock, a slow disk, a failover) the running
 * statements wait and new events queue behind them; once `maxQueued` events wait (EVENT_QUEUE_MAX,
 * 10,000, or `GATEWAY_EVENT_QUEUE_MAX`; the running statements not counted), a new append is
 * refused at once with EventQueueFullError, which the gateway answers 503 with `Retry-After`, so
 * the device keeps its events and sends them later; what was queued before stays queued and is
 * written once PostgreSQL answers.
 *
 * Measured by bench/replicas (3 replicas, 32 devices in flight): one transaction per check-in
 * made PostgreSQL the largest CPU user, more than the replica itself.
 */
export class EventGroupCommit {
  #queue: QueuedEvents[] = [];
  /** Events in #queue, at most `maxQueued`. */
  readonly #queued: WaitingWrites;
  #running = 0;
  #scheduled = false;

  constructor(
    private readonly sql: SQL,
    private readonly inFlight = 2,
    /** Devices per statement at most (a statement's arrays stay small). */
    private readonly maxDevices = 256,
    /** Events queued and not yet sent at most; past it a new append is refused (EVENT_QUEUE_MAX in ./_waiting-writes.ts). */
    maxQueued?: number,
  ) {
    this.#queued = eventQueueBound(maxQueued);
  }

  /**
   * Queues a device's events for the next statement; resolves with how many were new once it committed.
   *
   * @throws {EventQueueFullError} At once, queuing nothing, if `maxQueued` events already wait (the database is slow or stalled).
   */
  append(uuid: string, events: DeviceEvent[]): Promise<number> {
    if (!events.length) return Promise.resolve(0);
    const refused = this.#queued.admit(events.length, "Cannot store events");
    if (refused) return Promise.reject(refused);
    const { promise, resolve, reject } = Promise.withResolvers<number>();
    this.#queue.push({ uuid, events, at: new Date().toISOString(), resolve, reject });
    // Sent after the requests read in this turn of the event loop have queued theirs too.
    if (this.#running < this.inFlight && !this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => {
        this.#scheduled = false;
        if (this.#running < this.inFlight) this.#send();
      });
    }
    return promise;
  }

  /** Resolves once every queued and running statement has answered. */
  async drained(): Promise<void> {
    while (this.#running || this.#queue.length || this.#scheduled) await Bun.sleep(5);
  }

  #send(): void {
    const batch = this.#queue.splice(0, this.maxDevices);
    if (!batch.length) return;
    this.#queued.done(batch.reduce((n, q) => n + q.events.length, 0));
    this.#running++;
    void this.#write(batch).finally(() => {
      this.#running--;
      this.#send();
    });
  }

  async #write(batch: QueuedEvents[]): Promise<void> {
    try {
      const stored = await this.#insert(batch);
      batch.forEach((q, i) => q.resolve(stored[i]!));
    } catch (err) {
      // Refused for what a row holds (data exception 22xxx, integrity constraint 23xxx): try each
      // device alone, at once, so one device's bad row fails only its own request. Anything else
      // (the connection lost, a timeout, the server going away) fails the whole batch at once:
      // retrying up to maxDevices statements one by one would only make each caller wait longer.
      if (batch.length === 1 || !refusedForData(err)) {
        for (const q of batch) q.reject(err);
        return;
      }
      await Promise.all(batch.map((q) => this.#insert([q]).then(([n]) => q.resolve(n!), q.reject)));
    }
  }

  /** Inserts the batch's events in one statement; how many each caller's stored (an id seen before counts as not stored). */
  async #insert(batch: QueuedEvents[]): Promise<number[]> {
    // Device order: concurrent statements (other replicas, the status trigger's device updates) lock device rows in one order.
    const order = batch.map((_, i) => i).sort((a, b) => (batch[a]!.uuid < batch[b]!.uuid ? -1 : batch[a]!.uuid > batch[b]!.uuid ? 1 : a - b));
    const ids: string[] = [], uuids: string[] = [], ats: string[] = [], bodies: string[] = [];
    for (const i of order) {
      const q = batch[i]!;
      for (const e of q.events) {
        ids.push(e.id);
        uuids.push(q.uuid);
        ats.push(q.at);
        bodies.push(eventBody(e));
      }
    }
    const rows = (await this.sql.unsafe(
      `INSERT INTO events (id, device_uuid, received_at, body)
       SELECT id, uuid, at, body FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS e(id, uuid, at, body, n) ORDER BY n
       ON CONFLICT DO NOTHING RETURNING device_uuid, id`,
      [ids, uuids, ats, bodies],
    )) as { device_uuid: string; id: string }[];
    if (batch.length === 1) return [rows.length];
    // A row stored counts for the first caller of the batch that sent that device and id.
    const stored = new Map<string, number>();
    for (const r of rows) stored.set(`${r.device_uuid} ${r.id}`, 1);
    return batch.map((q) => {
      let n = 0;
      for (const e of q.events) {
        const k = `${q.uuid} ${e.id}`;
        if (stored.get(k) === 1) {
          stored.set(k, 0);
          n++;
        }
      }
      return n;
    });
  }
}

/** TufStorage on PostgreSQL: a unique violation (23505) on put means another gateway won that version. */
class PostgresTufStorage implements TufStorage {
  constructor(readonly sql: SQL) {}

  async getLatest(role: RoleName) {
    const rows = (await this.sql.unsafe(
      "SELECT role, version, json, expires FROM tuf_metadata WHERE role = $1 ORDER BY version DESC LIMIT 1",
      [role],
    )) as TufRecord[];
    return rows[0] ? { ...rows[0], version: Number(rows[0].version) } : undefined;
  }

  async get(role: RoleName, version: number) {
    const rows = (await this.sql.unsafe("SELECT role, version, json, expires FROM tuf_metadata WHERE role = $1 AND version = $2", [
      role,
      version,
    ])) as TufRecord[];
    return rows[0] ? { ...rows[0], version: Number(rows[0].version) } : undefined;
  }

  async put(records: TufRecord[]) {
    if (!records.length) return;
    try {
      await this.sql.begin(async (tx) => {
        for (const r of records)
          await tx.unsafe("INSERT INTO tuf_metadata (role, version, json, expires) VALUES ($1, $2, $3, $4)", [
            r.role,
            r.version,
            r.json,
            r.expires,
          ]);
      });
    } catch (err) {
      const e = err as { errno?: string; code?: string; message?: string };
      if (e.errno === "23505" || /duplicate key|unique constraint/i.test(e.message ?? "")) {
        const m = /\(role, version\)=\(([a-z]+), ([0-9]+)\)/.exec((err as { detail?: string }).detail ?? "");
        const r = m ? { role: m[1] as RoleName, version: Number(m[2]) } : records[0]!;
        throw new TufVersionConflictError(r.role, r.version, { cause: err });
      }
      throw err;
    }
  }
}
