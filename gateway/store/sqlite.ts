/**
 * The default store: bun:sqlite in WAL mode, one file in the data dir. Event
 * inserts from concurrent requests are group-committed (one fsync'd
 * transaction per event-loop turn) so durability does not cap throughput.
 *
 * @module
 */
import { Database } from "bun:sqlite";
import type { AppsStates, DeviceEvent } from "../../lib/api/index.ts";
import { TufVersionConflictError, type RoleName, type TufRecord, type TufStorage } from "../ota/storage.ts";
import { EventWriter } from "./_event-writer.ts";
import { APPS_STATES_SQL, LEASE_SQL, PRUNE_EVENTS_SQL, RELEASE_LEASE_SQL, SIGHTING_SQL, SYSTEM_INFO_SQL, type SightingParams } from "./_writer-thread.ts";
import { QUERIES_PER_READ, SQLITE, matchesOf, queriesMatchingSql, queryDevicesSql, searchSql, summarySql, toFleetDevice, type StatusRecord } from "./_search.ts";
import { checkSchemaUsable, MIGRATIONS, MIGRATIONS_TABLE, SCHEMA_NEEDED_KEY, schemaMigrated, schemaNeeded, type SchemaMigrated } from "./_migrations.ts";
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
import { clampLimit, eventBody, newDeviceParams, replacesSql, storedJson, toApiToken, toDevice, toToken, type ApiTokenRecord, type DeviceRecord, type TokenRecord } from "./_rows.ts";
import {
  DeviceRegisteredMeanwhileError,
  DeviceRevokedError,
  StoreUnavailableError,
  TokenUsedUpError,
  GroupExistsError,
  RolloutConflictError,
  type FleetQuery,
  type GroupRow,
  type RolloutDeviceChange,
  type RolloutDeviceFilter,
  type RolloutDeviceStatus,
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
} from "./types.ts";

/**
 * SQLite's write lock not had within the connection's busy_timeout (5 s on the main connection):
 * another connection held it that long (the event writer's commit in a disk that stalls, an
 * operator's `sqlite3` session). Transient: answered 503 with Retry-After like the other
 * StoreUnavailableErrors, not 500 with a stack trace. Undefined for any other error.
 */
export function sqliteBusy(err: unknown): StoreUnavailableError | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (code !== "SQLITE_BUSY" && code !== "SQLITE_BUSY_SNAPSHOT" && code !== "SQLITE_LOCKED") return undefined;
  return new StoreUnavailableError("The database is busy (another writer held it for seconds): try again shortly");
}

interface PendingEvents {
  uuid: string;
  events: DeviceEvent[];
  resolve(n: number): void;
  reject(e: unknown): void;
}

export class SqliteStore implements Store {
  readonly kind = "sqlite";
  migrated: SchemaMigrated | undefined;
  readonly #db: Database;
  readonly tuf: TufStorage;
  #pending: PendingEvents[] = [];
  #flushScheduled = false;

  readonly #writer: EventWriter | undefined;

  /**
   * Opens (creating if needed) and migrates a database file, or ":memory:". For a file, the
   * device path's writes (events, sightings, the lease, apps-states, system info) commit on a
   * worker thread (see _event-writer.ts).
   */
  static open(path: string): SqliteStore {
    return new SqliteStore(new Database(path, { create: true, strict: true }), path === ":memory:" ? undefined : path);
  }

  constructor(db: Database, eventWriterPath?: string) {
    this.#db = db;
    // busy_timeout first: the pragmas after it take locks too (the event writer's connection,
    // a backup or a second process may hold one).
    db.exec("PRAGMA busy_timeout = 5000");
    db.exec("PRAGMA journal_mode = WAL");
    // FULL: a commit survives power loss, which is what "acknowledged" promises devices.
    db.exec("PRAGMA synchronous = FULL");
    db.exec("PRAGMA foreign_keys = ON");
    try {
      this.#migrate();
    } catch (e) {
      db.close();
      throw e;
    }
    this.tuf = new SqliteTufStorage(db);
    if (eventWriterPath) this.#writer = new EventWriter(eventWriterPath);
  }

  /** @throws {DatabaseTooNewError} A newer gateway's schema this one cannot use (checked before anything is written). */
  #migrate() {
    this.#db.exec(MIGRATIONS_TABLE);
    const applied = new Set(
      this.#db.query<{ version: number }, []>("SELECT version FROM schema_migrations").all().map((r) => r.version),
    );
    // gateway_meta is migration 2.
    const stored = applied.has(2)
      ? this.#db.query<{ value: string }, [string]>("SELECT value FROM gateway_meta WHERE key = ?").get(SCHEMA_NEEDED_KEY)?.value
      : undefined;
    checkSchemaUsable(applied, stored);
    for (const m of MIGRATIONS) {
      if (applied.has(m.version)) continue;
      this.#db.transaction(() => {
        this.#db.exec(m.sqlite);
        this.#db
          .query("INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)")
          .run(m.version, m.description, new Date().toISOString());
      }).immediate();
    }
    const needed = schemaNeeded(stored);
    if (needed !== stored)
      this.#db.query("INSERT INTO gateway_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value").run(SCHEMA_NEEDED_KEY, needed);
    this.migrated = schemaMigrated(applied, stored);
  }

  async close() {
    this.#flush();
    await this.#writer?.close();
    this.#db.close();
  }

  async putDevice(d: NewDevice): Promise<DeviceRow> {
    // One transaction: the token's use is given back when the write is refused (NewDevice.spendsUseOf).
    // Immediate: begun as a read, it failed at once with SQLITE_BUSY when the event writer's thread
    // committed between its first read and its write (1 registration in 8,562 under load); taking
    // the write lock first, it waits for that commit instead (busy_timeout).
    return this.#db.transaction(() => {
      if (d.spendsUseOf !== undefined && !this.#claimTokenUse(d.spendsUseOf, new Date().toISOString())) throw new TokenUsedUpError(d.spendsUseOf);
      const existing = this.#device(d.uuid);
      if (existing?.revokedAt) throw new DeviceRevokedError(d.uuid);
      const written = this.#db
        .query(
          `INSERT INTO devices (uuid, name, hardware_id, factory, tags, cert_serial, created_at, apps, tags_from_device, key_sha256)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (uuid) DO UPDATE SET name = excluded.name, hardware_id = excluded.hardware_id,
             factory = excluded.factory, tags = excluded.tags, cert_serial = excluded.cert_serial, apps = excluded.apps,
             tags_from_device = excluded.tags_from_device, key_sha256 = excluded.key_sha256
           WHERE devices.revoked_at IS NULL${replacesSql(d.replaces, "?")}`,
        )
        .run(...newDeviceParams(d)).changes;
      const row = this.#device(d.uuid);
      if (!row || row.revokedAt) throw new DeviceRevokedError(d.uuid);
      if (!written) throw new DeviceRegisteredMeanwhileError(d.uuid);
      return row;
    }).immediate();
  }

  #device(uuid: string): DeviceRow | undefined {
    const r = this.#db.query<DeviceRecord, [string]>("SELECT * FROM devices WHERE uuid = ?").get(uuid);
    return r ? toDevice(r) : undefined;
  }

  async getDevice(uuid: string) {
    return this.#device(uuid);
  }

  async getDevices(uuids: readonly string[]) {
    const rows = this.#db
      .query<DeviceRecord, [string]>("SELECT * FROM devices WHERE uuid IN (SELECT value FROM json_each(?))")
      .all(JSON.stringify(uuids));
    return new Map(rows.map((r) => [r.uuid, toDevice(r)] as const));
  }

  async deviceKeySha256(uuid: string) {
    return this.#db.query<{ key_sha256: string | null }, [string]>("SELECT key_sha256 FROM devices WHERE uuid = ?").get(uuid)?.key_sha256;
  }

  async listDevices(opts: ListOptions = {}) {
    return this.#db
      .query<DeviceRecord, [string, number]>("SELECT * FROM devices WHERE uuid > ? ORDER BY uuid LIMIT ?")
      .all(opts.after ?? "", clampLimit(opts.limit))
      .map(toDevice);
  }

  async countDevices() {
    return this.#db.query<{ n: number }, []>("SELECT count(*) AS n FROM devices").get()!.n;
  }

  async runningTargets() {
    return this.#db
      .query<{ t: string }, []>("SELECT DISTINCT current_target AS t FROM devices WHERE current_target IS NOT NULL AND revoked_at IS NULL")
      .all()
      .map((r) => r.t);
  }

  async searchDevices(search: DeviceSearch) {
    const q = searchSql(SQLITE, search);
    const devices = this.#db.query<StatusRecord, any[]>(q.page.sql).all(...(q.page.params as any[])).map(toFleetDevice);
    if (!q.count) return { devices };
    const counts = this.#db.query<{ n: number; revoked?: number; reported_only?: number }, any[]>(q.count.sql).get(...(q.count.params as any[]))!;
    return {
      devices,
      total: counts.n,
      ...(counts.revoked !== undefined ? { revoked: counts.revoked } : {}),
      ...(counts.reported_only !== undefined ? { reportedOnly: counts.reported_only } : {}),
    };
  }

  async fleetSummary(offlineBefore: string, failures = 10): Promise<FleetCounts> {
    const q = summarySql(SQLITE);
    const byStatus = Object.fromEntries(
      this.#db.query<{ s: string; n: number }, [string]>(q.byStatus).all(offlineBefore).map((r) => [r.s, r.n]),
    );
    const versions = this.#db.query<{ target: string | null; n: number }, []>(q.versions).all().map((r) => ({ target: r.target, devices: r.n }));
    const recentFailures = this.#db.query<StatusRecord, [string, number]>(q.failures).all(offlineBefore, failures).map(toFleetDevice);
    const total = Object.values(byStatus).reduce((a, b) => a + b, 0);
    return { total, byStatus, versions, recentFailures };
  }

  async revokeDevice(uuid: string, at: string) {
    const res = this.#db
      .query("UPDATE devices SET revoked_at = coalesce(revoked_at, ?) WHERE uuid = ?")
      .run(at, uuid);
    return res.changes > 0;
  }

  async setDeviceTags(uuid: string, tags: string[]) {
    this.#db.query("UPDATE devices SET tags = ? WHERE uuid = ?").run(JSON.stringify(tags), uuid);
    return this.getDevice(uuid);
  }

  async setDeviceLabels(uuid: string, set: Record<string, string>, remove: string[], max?: number) {
    const found = this.#db.transaction(() => {
      const r = this.#db.query<{ labels: string }, [string]>("SELECT labels FROM devices WHERE uuid = ?").get(uuid);
      if (!r) return false;
      const labels = mergeLabels(JSON.parse(r.labels), set, remove, max === undefined ? undefined : { uuid, max });
      this.#db.query("UPDATE devices SET labels = ? WHERE uuid = ?").run(JSON.stringify(labels), uuid);
      return true;
    }).immediate();
    return found ? this.getDevice(uuid) : undefined;
  }

  async queryDevices(q: FleetQuery) {
    const w = queryDevicesSql(SQLITE, q);
    return this.#db
      .query<{ uuid: string }, any[]>(w.sql)
      .all(...(w.params as any[]))
      .map((r) => r.uuid);
  }

  async queriesMatching(uuid: string, queries: FleetQuery[]) {
    const out: boolean[] = [];
    for (const part of chunks(queries, QUERIES_PER_READ)) {
      const w = queriesMatchingSql(SQLITE, uuid, part);
      out.push(...matchesOf(this.#db.query<Record<string, unknown>, any[]>(w.sql).get(...(w.params as any[])) ?? undefined, part.length));
    }
    return out;
  }

  async knownDevices(uuids: string[]) {
    const out: { uuid: string; revokedAt: string | null }[] = [];
    for (const part of chunks([...new Set(uuids)], 500))
      for (const r of this.#db
        .query<{ uuid: string; revoked_at: string | null }, string[]>(`SELECT uuid, revoked_at FROM devices WHERE uuid IN (${part.map(() => "?").join(",")})`)
        .all(...part))
        out.push({ uuid: r.uuid, revokedAt: r.revoked_at });
    return out.sort((a, b) => (a.uuid < b.uuid ? -1 : a.uuid > b.uuid ? 1 : 0));
  }

  async createGroup(g: GroupRow) {
    const res = this.#db
      .query("INSERT INTO device_groups (name, kind, query, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING")
      .run(g.name, g.kind, g.query, g.createdAt);
    if (res.changes === 0) throw new GroupExistsError(g.name);
  }

  async getGroup(name: string) {
    const r = this.#db.query<GroupRecord, [string]>("SELECT * FROM device_groups WHERE name = ?").get(name);
    return r ? toGroup(r) : undefined;
  }

  async listGroups() {
    return this.#db.query<GroupRecord, []>("SELECT * FROM device_groups ORDER BY name").all().map(toGroup);
  }

  async deleteGroup(name: string) {
    return this.#db.transaction(() => {
      this.#db.query("DELETE FROM group_members WHERE group_name = ?").run(name);
      return this.#db.query("DELETE FROM device_groups WHERE name = ?").run(name).changes > 0;
    }).immediate();
  }

  async addGroupMembers(name: string, uuids: string[]) {
    return this.#db.transaction(() => {
      let n = 0;
      for (const part of chunks([...new Set(uuids)], 500))
        n += this.#db
          .query(
            `INSERT INTO group_members (group_name, device_uuid)
             SELECT ?, uuid FROM devices WHERE uuid IN (${part.map(() => "?").join(",")}) ON CONFLICT DO NOTHING`,
          )
          .run(name, ...part).changes;
      return n;
    }).immediate();
  }

  async removeGroupMembers(name: string, uuids: string[]) {
    return this.#db.transaction(() => {
      let n = 0;
      for (const part of chunks([...new Set(uuids)], 500))
        n += this.#db
          .query(`DELETE FROM group_members WHERE group_name = ? AND device_uuid IN (${part.map(() => "?").join(",")})`)
          .run(name, ...part).changes;
      return n;
    }).immediate();
  }

  async listGroupMembers(name: string) {
    return this.#db
      .query<{ device_uuid: string }, [string]>("SELECT device_uuid FROM group_members WHERE group_name = ? ORDER BY device_uuid")
      .all(name)
      .map((r) => r.device_uuid);
  }

  async createRollout(row: NewRollout, members: RolloutMember[], events: Omit<RolloutEventRow, "id">[] = []) {
    const { columns, values } = rolloutColumns(row);
    const member = this.#db.query(
      "INSERT INTO rollout_devices (rollout_id, device_uuid, wave, status, updated_at) VALUES (?, ?, ?, 'pending', ?)",
    );
    try {
      this.#db.transaction(() => {
        this.#db
          .query(`INSERT INTO rollouts (${columns.join(", ")}) VALUES (${columns.map(() => "?").join(", ")})`)
          .run(...(values as any[]));
        for (const m of members) member.run(row.id, m.uuid, m.wave, row.createdAt);
        this.#insertRolloutEvents(events);
      }).immediate();
    } catch (err) {
      if (isActiveRolloutConflict(err)) throw new RolloutConflictError(row.targetVersion);
      throw err;
    }
  }

  async getRollout(id: string) {
    const r = this.#db.query<RolloutRecord, [string]>("SELECT * FROM rollouts WHERE id = ?").get(id);
    return r ? toRollout(r) : undefined;
  }

  async listRollouts(opts: { active?: boolean; limit?: number } = {}) {
    const where = opts.active ? "WHERE state IN ('running', 'paused', 'halted')" : "";
    return this.#db
      .query<RolloutRecord, [number]>(`SELECT * FROM rollouts ${where} ORDER BY created_at DESC, id DESC LIMIT ?`)
      .all(clampLimit(opts.limit))
      .map(toRollout);
  }

  async activeRollouts() {
    return this.listRollouts({ active: true });
  }

  async gatingRollouts() {
    return this.#db.query<RolloutRecord, []>(GATING_ROLLOUTS_SQL).all().map(toRollout);
  }

  async updateRollout(id: string, expectedRevision: number, patch: RolloutPatch, events: Omit<RolloutEventRow, "id">[] = []) {
    const { ifFailed, ...fields } = patch;
    const { columns, values } = rolloutColumns({ ...fields, updatedAt: patch.updatedAt ?? new Date().toISOString() });
    const failed = ifFailed === undefined ? "" : "AND (SELECT count(*) FROM rollout_devices WHERE rollout_id = rollouts.id AND status = 'failed') = ?";
    const q = this.#db.query<RolloutRecord, any[]>(
      `UPDATE rollouts SET ${columns.map((c) => `${c} = ?`).join(", ")}, revision = revision + 1
       WHERE id = ? AND revision = ? ${failed} RETURNING *`,
    );
    const r = this.#db.transaction(() => {
      const row = q.get(...(values as any[]), id, expectedRevision, ...(ifFailed === undefined ? [] : [ifFailed]));
      if (row) this.#insertRolloutEvents(events);
      return row;
    }).immediate();
    return r ? toRollout(r) : undefined;
  }

  async rolloutMembers(id: string) {
    return this.#db
      .query<{ uuid: string; wave: number }, [string]>(
        "SELECT device_uuid AS uuid, wave FROM rollout_devices WHERE rollout_id = ? ORDER BY wave, device_uuid",
      )
      .all(id);
  }

  async rolloutDeviceStates(id: string, opts: RolloutDeviceFilter & { limit?: number; after?: string } = {}) {
    const params: unknown[] = [];
    const p = (v: unknown) => (params.push(v), SQLITE.param(params.length));
    const conds = [...rolloutDeviceConds(p, id, opts), `device_uuid > ${p(opts.after ?? "")}`];
    return this.#db
      .query<RolloutDeviceRecord, any[]>(`SELECT * FROM rollout_devices WHERE ${conds.join(" AND ")} ORDER BY device_uuid LIMIT ${p(clampLimit(opts.limit, 100_000))}`)
      .all(...(params as any[]))
      .map(toRolloutDevice);
  }

  async countRolloutDevices(id: string, opts: RolloutDeviceFilter = {}) {
    const params: unknown[] = [];
    const conds = rolloutDeviceConds((v) => (params.push(v), SQLITE.param(params.length)), id, opts);
    return this.#db.query<{ n: number }, any[]>(`SELECT count(*) AS n FROM rollout_devices WHERE ${conds.join(" AND ")}`).get(...(params as any[]))!.n;
  }

  async updateRolloutDevices(id: string, changes: RolloutDeviceChange[], opts: { revision?: number; events?: Omit<RolloutEventRow, "id">[] } = {}) {
    const events = opts.events ?? [];
    if (!changes.length && !events.length) return true;
    // Each field: a "given" flag and its value, so a change can clear a field (null) or leave it alone.
    const q = this.#db.query(
      `UPDATE rollout_devices SET
         status = CASE WHEN ?2 THEN ?3 ELSE status END,
         reason = CASE WHEN ?4 THEN ?5 ELSE reason END,
         healthy_since = CASE WHEN ?6 THEN ?7 ELSE healthy_since END,
         hold = CASE WHEN ?8 THEN ?9 ELSE hold END,
         updated_at = ?10
       WHERE rollout_id = ?1 AND device_uuid = ?11 AND status = 'pending'`,
    );
    const now = new Date().toISOString();
    const revision = this.#db.query<{ revision: number }, [string]>("SELECT revision FROM rollouts WHERE id = ?");
    return this.#db.transaction(() => {
      if (opts.revision !== undefined && revision.get(id)?.revision !== opts.revision) return false;
      const changed = new Set<string>();
      for (const c of changes) {
        const { changes: n } = q.run(
          id,
          c.status !== undefined ? 1 : 0,
          c.status ?? null,
          c.reason !== undefined ? 1 : 0,
          c.reason ?? null,
          c.healthySince !== undefined ? 1 : 0,
          c.healthySince ?? null,
          c.hold !== undefined ? 1 : 0,
          c.hold ? JSON.stringify(c.hold) : null,
          c.updatedAt ?? now,
          c.uuid,
        );
        if (n) changed.add(c.uuid);
      }
      // A member another writer settled first keeps its verdict, and its event is that writer's alone.
      this.#insertRolloutEvents(events.filter((e) => e.deviceUuid === null || changed.has(e.deviceUuid)));
      return true;
    }).immediate();
  }

  async rolloutCounts(id: string) {
    return this.#db
      .query<{ wave: number; status: RolloutDeviceStatus; devices: number }, [string]>(
        "SELECT wave, status, count(*) AS devices FROM rollout_devices WHERE rollout_id = ? GROUP BY wave, status ORDER BY wave, status",
      )
      .all(id);
  }

  /** Inside a transaction. */
  #insertRolloutEvents(events: Omit<RolloutEventRow, "id">[]) {
    const q = this.#db.query("INSERT INTO rollout_events (rollout_id, at, kind, wave, device_uuid, reason) VALUES (?, ?, ?, ?, ?, ?)");
    for (const e of events) q.run(e.rolloutId, e.at, e.kind, e.wave, e.deviceUuid, e.reason);
  }

  async listRolloutEvents(id: string, opts: { limit?: number; device?: boolean } = {}) {
    return this.#db
      .query<RolloutEventRecord, [string, number]>(`SELECT * FROM rollout_events WHERE rollout_id = ? ${eventsOf(opts.device)} ORDER BY id DESC LIMIT ?`)
      .all(id, clampLimit(opts.limit ?? 100, 10_000))
      .map(toRolloutEvent);
  }

  async pendingRolloutEvidence(id: string, maxWave: number) {
    return this.#db.transaction(() =>
      toEvidence(
        this.#db.query<EvidenceMemberRecord, [string, number]>(EVIDENCE_MEMBERS(SQLITE)).all(id, maxWave),
        this.#db.query<EvidenceEventRecord, [string, number]>(EVIDENCE_EVENTS(SQLITE)).all(id, maxWave),
      ),
    )();
  }

  async recordSightings(batch: Sighting[]) {
    if (!batch.length) return;
    const rows = batch.map((s): SightingParams => [
      s.at,
      s.tags ? JSON.stringify(s.tags) : null,
      s.currentTarget ?? null,
      s.apps ? JSON.stringify(s.apps) : null,
      s.uuid,
    ]);
    // On a file, on the event writer's connection: the main thread never waits for the write lock.
    if (this.#writer) return this.#writer.recordSightings(rows);
    const q = this.#db.query(SIGHTING_SQL);
    this.#db.transaction(() => {
      for (const r of rows) q.run(...r);
    })();
  }

  appendEvents(uuid: string, events: DeviceEvent[]): Promise<number> {
    if (!events.length) return Promise.resolve(0);
    if (this.#writer) return this.#writer.append(uuid, events);
    return new Promise((resolve, reject) => {
      this.#pending.push({ uuid, events, resolve, reject });
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  /** Commits every queued event batch in one transaction, then settles their promises. */
  #flush() {
    this.#flushScheduled = false;
    const batch = this.#pending;
    this.#pending = [];
    if (!batch.length) return;
    const q = this.#db.query(
      "INSERT INTO events (id, device_uuid, received_at, body) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
    );
    const now = new Date().toISOString();
    try {
      const counts = this.#db.transaction(() =>
        batch.map((p) => {
          let n = 0;
          for (const e of p.events) n += q.run(e.id, p.uuid, now, eventBody(e)).changes;
          return n;
        }),
      )();
      batch.forEach((p, i) => p.resolve(counts[i]!));
    } catch (err) {
      for (const p of batch) p.reject(err);
    }
  }

  async listEvents(uuid: string, opts: { limit?: number } = {}): Promise<StoredEvent[]> {
    // No (device_uuid, seq) index (migration 33): the device's seqs come from the covering dedupe
    // index and the rows are read in seq order by rowid, instead of reading and sorting every row
    // the device ever sent on the event loop (20,000 events: 31 ms against 165). The newest, read
    // newest first and put back in arrival order here (a sort of them in SQL: 15 ms against 12).
    return this.#db
      .query<{ id: string; device_uuid: string; received_at: string; body: string }, [string, number]>(
        "SELECT id, device_uuid, received_at, body FROM events WHERE seq IN (SELECT seq FROM events WHERE device_uuid = ?1) ORDER BY seq DESC LIMIT ?2",
      )
      .all(uuid, clampLimit(opts.limit, 10000))
      .reverse()
      .flatMap((r) => {
        // An event stored before the intake depth cap and nested too deep is left out of listings.
        const event = storedJson<DeviceEvent | undefined>(r.body, undefined);
        return event ? [{ id: r.id, deviceUuid: r.device_uuid, receivedAt: r.received_at, event }] : [];
      });
  }

  async countEvents() {
    return this.#db.query<{ n: number }, []>("SELECT count(*) AS n FROM events").get()!.n;
  }

  async pruneEvents(before: string, limit: number): Promise<number> {
    // On a file, on the writer's connection, between event batches: the main thread never holds the write lock for it.
    const now = new Date().toISOString();
    if (this.#writer) return this.#writer.run("pruneEvents", [[before, limit, now]], "Cannot remove old events");
    return this.#db.query(PRUNE_EVENTS_SQL).run(before, limit, now).changes;
  }

  async putAppsStates(uuid: string, states: AppsStates) {
    const row = [uuid, JSON.stringify(states), new Date().toISOString()];
    // On a file, on the writer's connection, like sightings: the main thread never waits for the write lock.
    if (this.#writer) return this.#writer.putState("appsStates", row, "Cannot store apps-states"); // bounded while a commit stalls
    this.#db.query(APPS_STATES_SQL).run(...row);
  }

  async getAppsStates(uuid: string) {
    const r = this.#db.query<{ body: string }, [string]>("SELECT body FROM apps_states WHERE device_uuid = ?").get(uuid);
    return r ? storedJson<AppsStates | undefined>(r.body, undefined) : undefined;
  }

  async putSystemInfo(uuid: string, kind: SystemInfoKind, value: unknown) {
    const row = [uuid, kind, JSON.stringify(value), new Date().toISOString()];
    if (this.#writer) return this.#writer.putState("systemInfo", row, `Cannot store system info (${kind})`);
    this.#db.query(SYSTEM_INFO_SQL).run(...row);
  }

  async getSystemInfo(uuid: string) {
    const out: Partial<Record<SystemInfoKind, unknown>> = {};
    for (const r of this.#db
      .query<{ kind: SystemInfoKind; body: string }, [string]>("SELECT kind, body FROM system_info WHERE device_uuid = ?")
      .all(uuid))
      out[r.kind] = storedJson(r.body);
    return out;
  }

  async tryLease(name: string, holder: string, ttlMs: number) {
    if (this.#writer) return this.#writer.tryLease(name, holder, ttlMs);
    const row = this.#db.query<{ holder: string }, [string, string, number]>(LEASE_SQL).get(name, holder, ttlMs);
    return row?.holder === holder;
  }

  async releaseLease(name: string, holder: string) {
    if (this.#writer) return this.#writer.releaseLease(name, holder);
    this.#db.query(RELEASE_LEASE_SQL).run(name, holder);
  }

  async claimMeta(key: string, value: string) {
    this.#db.query("INSERT INTO gateway_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING").run(key, value);
    return this.#db.query<{ value: string }, [string]>("SELECT value FROM gateway_meta WHERE key = ?").get(key)!.value;
  }

  async readMeta(key: string) {
    return this.#db.query<{ value: string }, [string]>("SELECT value FROM gateway_meta WHERE key = ?").get(key)?.value;
  }

  async forgetMeta(key: string, value: string) {
    return this.#db.query("DELETE FROM gateway_meta WHERE key = ? AND value = ?").run(key, value).changes > 0;
  }

  async createRegistrationToken(t: NewRegistrationToken) {
    this.#db
      .query(
        `INSERT INTO registration_tokens (id, secret_hash, name, tags, hardware_id, created_at, expires_at, max_uses, allow_device_tags)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(t.id, t.secretHash, t.name, JSON.stringify(t.tags), t.hardwareId, t.createdAt, t.expiresAt, t.maxUses, t.allowDeviceTags ? 1 : 0);
  }

  async listRegistrationTokens() {
    return this.#db.query<TokenRecord, []>("SELECT * FROM registration_tokens ORDER BY created_at").all().map(toToken);
  }

  async getRegistrationTokenByHash(secretHash: string) {
    const r = this.#db.query<TokenRecord, [string]>("SELECT * FROM registration_tokens WHERE secret_hash = ?").get(secretHash);
    return r ? toToken(r) : undefined;
  }

  async claimTokenUse(id: string, now: string) {
    return this.#claimTokenUse(id, now);
  }

  #claimTokenUse(id: string, now: string): boolean {
    const res = this.#db
      .query(
        `UPDATE registration_tokens SET uses = uses + 1
         WHERE id = ? AND revoked_at IS NULL AND expires_at > ? AND (max_uses IS NULL OR uses < max_uses)`,
      )
      .run(id, now);
    return res.changes === 1;
  }

  async revokeRegistrationToken(id: string, at: string) {
    return this.#db.query("UPDATE registration_tokens SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?").run(at, id).changes > 0;
  }

  async createApiToken(t: Omit<ApiTokenRow, "revokedAt">) {
    this.#db
      .query("INSERT INTO api_tokens (id, secret_hash, role, name, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)")
      .run(t.id, t.secretHash, t.role, t.name, t.createdAt, t.expiresAt);
  }

  async listApiTokens() {
    return this.#db.query<ApiTokenRecord, []>("SELECT * FROM api_tokens ORDER BY created_at").all().map(toApiToken);
  }

  async getApiTokenByHash(secretHash: string) {
    const r = this.#db.query<ApiTokenRecord, [string]>("SELECT * FROM api_tokens WHERE secret_hash = ?").get(secretHash);
    return r ? toApiToken(r) : undefined;
  }

  async getApiToken(id: string) {
    const r = this.#db.query<ApiTokenRecord, [string]>("SELECT * FROM api_tokens WHERE id = ?").get(id);
    return r ? toApiToken(r) : undefined;
  }

  async revokeApiToken(id: string, at: string) {
    return this.#db.query("UPDATE api_tokens SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?").run(at, id).changes > 0;
  }
}

/** TufStorage on the same database: `(role, version)` is the primary key, so a duplicate aborts the whole put. */
class SqliteTufStorage implements TufStorage {
  constructor(readonly db: Database) {}

  async getLatest(role: RoleName) {
    return this.db
      .query<TufRecord, [string]>("SELECT role, version, json, expires FROM tuf_metadata WHERE role = ? ORDER BY version DESC LIMIT 1")
      .get(role) ?? undefined;
  }

  async get(role: RoleName, version: number) {
    return this.db
      .query<TufRecord, [string, number]>("SELECT role, version, json, expires FROM tuf_metadata WHERE role = ? AND version = ?")
      .get(role, version) ?? undefined;
  }

  async put(records: TufRecord[]) {
    const q = this.db.query("INSERT INTO tuf_metadata (role, version, json, expires) VALUES (?, ?, ?, ?)");
    try {
      this.db.transaction(() => {
        for (const r of records) q.run(r.role, r.version, r.json, r.expires);
      }).immediate();
    } catch (err) {
      const r = conflicting(err, records);
      if (r) throw new TufVersionConflictError(r.role, r.version, { cause: err });
      throw err;
    }
  }
}

/** The record a failed put collided with, if the failure was a primary-key violation. */
function conflicting(err: unknown, records: TufRecord[]): TufRecord | undefined {
  const e = err as { code?: string; message?: string };
  if (!/CONSTRAINT/.test(e.code ?? "") && !/UNIQUE constraint/i.test(e.message ?? "")) return undefined;
  return records[0];
}
