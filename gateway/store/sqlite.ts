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
import { SQLITE, searchSql, summarySql, toFleetDevice, type StatusRecord } from "./_search.ts";
import { MIGRATIONS, MIGRATIONS_TABLE } from "./_migrations.ts";
import { clampLimit, storedJson, toApiToken, toDevice, toToken, type ApiTokenRecord, type DeviceRecord, type TokenRecord } from "./_rows.ts";
import {
  DeviceRevokedError,
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

interface PendingEvents {
  uuid: string;
  events: DeviceEvent[];
  resolve(n: number): void;
  reject(e: unknown): void;
}

export class SqliteStore implements Store {
  readonly kind = "sqlite";
  readonly #db: Database;
  readonly tuf: TufStorage;
  #pending: PendingEvents[] = [];
  #flushScheduled = false;

  readonly #writer: EventWriter | undefined;

  /**
   * Opens (creating if needed) and migrates a database file, or ":memory:". For a file, event
   * inserts commit on a worker thread (see _event-writer.ts).
   */
  static open(path: string): SqliteStore {
    return new SqliteStore(new Database(path, { create: true, strict: true }), path === ":memory:" ? undefined : path);
  }

  constructor(db: Database, eventWriterPath?: string) {
    this.#db = db;
    db.exec("PRAGMA journal_mode = WAL");
    // FULL: a commit survives power loss, which is what "acknowledged" promises devices.
    db.exec("PRAGMA synchronous = FULL");
    db.exec("PRAGMA busy_timeout = 5000");
    db.exec("PRAGMA foreign_keys = ON");
    this.#migrate();
    this.tuf = new SqliteTufStorage(db);
    if (eventWriterPath) this.#writer = new EventWriter(eventWriterPath);
  }

  #migrate() {
    this.#db.exec(MIGRATIONS_TABLE);
    const applied = new Set(
      this.#db.query<{ version: number }, []>("SELECT version FROM schema_migrations").all().map((r) => r.version),
    );
    for (const m of MIGRATIONS) {
      if (applied.has(m.version)) continue;
      this.#db.transaction(() => {
        this.#db.exec(m.sqlite);
        this.#db
          .query("INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)")
          .run(m.version, m.description, new Date().toISOString());
      }).immediate();
    }
  }

  async close() {
    this.#flush();
    await this.#writer?.close();
    this.#db.close();
  }

  async putDevice(d: NewDevice): Promise<DeviceRow> {
    const existing = await this.getDevice(d.uuid);
    if (existing?.revokedAt) throw new DeviceRevokedError(d.uuid);
    this.#db
      .query(
        `INSERT INTO devices (uuid, name, hardware_id, factory, tags, cert_serial, created_at, apps, tags_from_device)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (uuid) DO UPDATE SET name = excluded.name, hardware_id = excluded.hardware_id,
           factory = excluded.factory, tags = excluded.tags, cert_serial = excluded.cert_serial, apps = excluded.apps,
           tags_from_device = excluded.tags_from_device
         WHERE devices.revoked_at IS NULL`,
      )
      .run(
        d.uuid,
        d.name,
        d.hardwareId,
        d.factory,
        JSON.stringify(d.tags),
        d.certSerial,
        d.createdAt ?? new Date().toISOString(),
        d.apps ? JSON.stringify(d.apps) : null,
        d.tagsFromDevice ? 1 : 0,
      );
    const row = await this.getDevice(d.uuid);
    if (!row || row.revokedAt) throw new DeviceRevokedError(d.uuid);
    return row;
  }

  async getDevice(uuid: string) {
    const r = this.#db.query<DeviceRecord, [string]>("SELECT * FROM devices WHERE uuid = ?").get(uuid);
    return r ? toDevice(r) : undefined;
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

  async searchDevices(search: DeviceSearch) {
    const q = searchSql(SQLITE, search);
    const devices = this.#db.query<StatusRecord, any[]>(q.page.sql).all(...(q.page.params as any[])).map(toFleetDevice);
    const total = this.#db.query<{ n: number }, any[]>(q.count.sql).get(...(q.count.params as any[]))!.n;
    return { devices, total };
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

  async recordSightings(batch: Sighting[]) {
    if (!batch.length) return;
    // Tags from a check-in count only for devices whose registration token let them choose.
    const q = this.#db.query(
      `UPDATE devices SET last_seen = ?1,
         tags = CASE WHEN tags_from_device = 1 THEN coalesce(?2, tags) ELSE tags END,
         current_target = coalesce(?3, current_target), apps = coalesce(?4, apps)
       WHERE uuid = ?5`,
    );
    this.#db.transaction(() => {
      for (const s of batch) {
        q.run(
          s.at,
          s.tags ? JSON.stringify(s.tags) : null,
          s.currentTarget ?? null,
          s.apps ? JSON.stringify(s.apps) : null,
          s.uuid,
        );
      }
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
          for (const e of p.events) n += q.run(e.id, p.uuid, now, JSON.stringify(e)).changes;
          return n;
        }),
      )();
      batch.forEach((p, i) => p.resolve(counts[i]!));
    } catch (err) {
      for (const p of batch) p.reject(err);
    }
  }

  async listEvents(uuid: string, opts: { limit?: number } = {}): Promise<StoredEvent[]> {
    return this.#db
      .query<{ id: string; device_uuid: string; received_at: string; body: string }, [string, number]>(
        "SELECT id, device_uuid, received_at, body FROM events WHERE device_uuid = ? ORDER BY seq LIMIT ?",
      )
      .all(uuid, clampLimit(opts.limit, 10000))
      .flatMap((r) => {
        // An event stored before the intake depth cap and nested too deep is left out of listings.
        const event = storedJson<DeviceEvent | undefined>(r.body, undefined);
        return event ? [{ id: r.id, deviceUuid: r.device_uuid, receivedAt: r.received_at, event }] : [];
      });
  }

  async countEvents() {
    return this.#db.query<{ n: number }, []>("SELECT count(*) AS n FROM events").get()!.n;
  }

  async putAppsStates(uuid: string, states: AppsStates) {
    this.#db
      .query(
        `INSERT INTO apps_states (device_uuid, body, updated_at) VALUES (?, ?, ?)
         ON CONFLICT (device_uuid) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at`,
      )
      .run(uuid, JSON.stringify(states), new Date().toISOString());
  }

  async getAppsStates(uuid: string) {
    const r = this.#db.query<{ body: string }, [string]>("SELECT body FROM apps_states WHERE device_uuid = ?").get(uuid);
    return r ? storedJson<AppsStates | undefined>(r.body, undefined) : undefined;
  }

  async putSystemInfo(uuid: string, kind: SystemInfoKind, value: unknown) {
    this.#db
      .query(
        `INSERT INTO system_info (device_uuid, kind, body, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (device_uuid, kind) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at`,
      )
      .run(uuid, kind, JSON.stringify(value), new Date().toISOString());
  }

  async getSystemInfo(uuid: string) {
    const out: Partial<Record<SystemInfoKind, unknown>> = {};
    for (const r of this.#db
      .query<{ kind: SystemInfoKind; body: string }, [string]>("SELECT kind, body FROM system_info WHERE device_uuid = ?")
      .all(uuid))
      out[r.kind] = storedJson(r.body);
    return out;
  }

  async tryLease(name: string, holder: string, ttlMs: number, now = new Date()) {
    // One statement: insert, or take over an expired lease, or renew our own; RETURNING tells who holds it.
    const row = this.#db
      .query<{ holder: string }, [string, string, string, string]>(
        `INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
         WHERE leases.holder = excluded.holder OR leases.expires_at < ?4
         RETURNING holder`,
      )
      .get(name, holder, new Date(now.getTime() + ttlMs).toISOString(), now.toISOString());
    return row?.holder === holder;
  }

  async releaseLease(name: string, holder: string) {
    this.#db.query("DELETE FROM leases WHERE name = ? AND holder = ?").run(name, holder);
  }

  async claimMeta(key: string, value: string) {
    this.#db.query("INSERT INTO gateway_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING").run(key, value);
    return this.#db.query<{ value: string }, [string]>("SELECT value FROM gateway_meta WHERE key = ?").get(key)!.value;
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
