/**
 * Versioned schema migrations for both backends. Each entry runs once, in
 * order, recorded in `schema_migrations`; never edit an applied entry, append
 * a new one. JSON is kept as text so both dialects share one row shape.
 *
 * A gateway rolled back after an upgrade finds migrations it does not know. Whether it may
 * still use the database is recorded in it, by the gateway that migrated it: gateway_meta's
 * {@link SCHEMA_NEEDED_KEY}, the last migration an older gateway cannot work without
 * ({@link Migration.olderGatewaysMayUse}). A gateway that knows less refuses to start
 * ({@link DatabaseTooNewError}) instead of writing rows a schema it does not know may read
 * otherwise. Gateways from before this record (up to 2026-12-02, migration 32) do not read it:
 * they run on anything up to migration 36 (walked: they serve, store events and register devices).
 *
 * @module
 */
export interface Migration {
  version: number;
  description: string;
  sqlite: string;
  postgres: string;
  /**
   * A gateway that does not know this migration can still use the database after it (an index,
   * the same trigger made cheaper, statistics). Unset: it cannot, and refuses to start.
   */
  olderGatewaysMayUse?: true;
}

const v1Tables = (serial: string) => `
CREATE TABLE devices (
  uuid TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  hardware_id TEXT NOT NULL,
  factory TEXT NOT NULL,
  tags TEXT NOT NULL,
  cert_serial TEXT NOT NULL,
  created_at TEXT NOT NULL,
  last_seen TEXT,
  current_target TEXT,
  apps TEXT,
  revoked_at TEXT
);
CREATE TABLE events (
  seq ${serial},
  id TEXT NOT NULL,
  device_uuid TEXT NOT NULL,
  received_at TEXT NOT NULL,
  body TEXT NOT NULL,
  UNIQUE (device_uuid, id)
);
CREATE INDEX events_device ON events (device_uuid, seq);
CREATE TABLE apps_states (
  device_uuid TEXT PRIMARY KEY,
  body TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE system_info (
  device_uuid TEXT NOT NULL,
  kind TEXT NOT NULL,
  body TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (device_uuid, kind)
);
CREATE TABLE registration_tokens (
  id TEXT PRIMARY KEY,
  secret_hash TEXT NOT NULL UNIQUE,
  tags TEXT NOT NULL,
  hardware_id TEXT,
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  uses INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE tuf_metadata (
  role TEXT NOT NULL,
  version INTEGER NOT NULL,
  json TEXT NOT NULL,
  expires TEXT NOT NULL,
  PRIMARY KEY (role, version)
);
`;

const v3Tokens = `
ALTER TABLE registration_tokens ADD COLUMN name TEXT;
ALTER TABLE registration_tokens ADD COLUMN max_uses INTEGER;
ALTER TABLE registration_tokens ADD COLUMN allow_device_tags INTEGER NOT NULL DEFAULT 0;
ALTER TABLE registration_tokens ADD COLUMN revoked_at TEXT;
ALTER TABLE devices ADD COLUMN tags_from_device INTEGER NOT NULL DEFAULT 0;
CREATE TABLE api_tokens (
  id TEXT PRIMARY KEY,
  secret_hash TEXT NOT NULL UNIQUE,
  role TEXT NOT NULL,
  name TEXT,
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  revoked_at TEXT
)
`;

/**
 * A device's update status from the event just stored: the steps of an update make it "updating",
 * a successful EcuInstallationCompleted "up-to-date", a failed download or install "failed", a
 * failed install that restored the previous target ("rollbackOk":true in its details) "rolled-back",
 * and one the user cancelled on the device (`fioup cancel`: "canceled":true in its details, as
 * gateway/fleet/update-outcome.ts isCancelEvent reads it) "cancelled", which is no failure.
 * status_detail keeps the failure's details text (see {@link detailOf}), status_at when the event
 * arrived (since migration 34: when the status began, see statusTrigger).
 *
 * The one home of the rule: migrations 30, 34, 38 and 41 are all built from it. A new database so
 * gets today's rule from migration 30 on, and 38 (the cancel) and 41 make the same trigger again;
 * a database migrated before 41 has its trigger replaced by 41's.
 *
 * The event's type is read once per status worked out (a CASE on it), not once per branch: the
 * SQLite trigger works the status out five times per stored event (its WHEN, the two columns it
 * sets and the two it compares), and with a branch per type test an "updating" event read the
 * type 25 times, each a json_extract of the body: about a third of a stored event's CPU on the
 * writer's connection (bench/gateway-checkin/README.md, 2026-12-07: 17.5-24.8 against 11.8-15.7 µs
 * of user CPU per event, batches of 40 on 1,010,000 devices).
 */
const statusOf = (body: (field: "type" | "success" | "failed" | "details") => string) => `CASE ${body('type')}
      WHEN 'EcuDownloadStarted' THEN 'updating'
      WHEN 'EcuInstallationStarted' THEN 'updating'
      WHEN 'EcuInstallationApplied' THEN 'updating'
      WHEN 'EcuDownloadCompleted' THEN CASE
        WHEN ${body('failed')} AND ${cancelled(body('details'))} THEN 'cancelled'
        WHEN ${body('failed')} THEN 'failed'
        ELSE 'updating'
      END
      WHEN 'EcuInstallationCompleted' THEN CASE
        WHEN ${body('success')} THEN 'up-to-date'
        WHEN ${body('failed')} AND ${cancelled(body('details'))} THEN 'cancelled'
        WHEN ${body('details')} LIKE '%"rollbackOk":true%' THEN 'rolled-back'
        WHEN ${body('failed')} THEN 'failed'
      END
    END`;

/**
 * Whether a failed completion's details text (SQL) is that of a cancel: fioup writes `{"canceled":true,...}`.
 * A cancel whose restore of the previous apps failed (`"restoreOk":false`) is no such thing: the
 * device may run no working app, so it stays "failed", with its reason (gateway/fleet/update-outcome.ts
 * isCancelEvent says the same).
 */
const cancelled = (details: string) => `(${details} LIKE '%"canceled":true%' AND ${details} NOT LIKE '%"restoreOk":false%')`;

const v30Indexes = `
CREATE INDEX devices_status ON devices (status, last_seen);
CREATE INDEX devices_last_seen ON devices (last_seen);
CREATE INDEX devices_name ON devices (name);
CREATE INDEX devices_hardware_id ON devices (hardware_id);
CREATE INDEX devices_current_target ON devices (current_target);
CREATE INDEX devices_status_at ON devices (status_at)`;

const v31Indexes = `
DROP INDEX devices_current_target;
CREATE INDEX devices_current_target_revoked ON devices (current_target, revoked_at);
DROP INDEX devices_status;
CREATE INDEX devices_status_seen ON devices (status, revoked_at, last_seen, created_at)`;

const v30Status = {
  sqlite: `
ALTER TABLE devices ADD COLUMN status TEXT NOT NULL DEFAULT 'registered';
ALTER TABLE devices ADD COLUMN status_detail TEXT;
ALTER TABLE devices ADD COLUMN status_at TEXT;
${v30Indexes};
CREATE TRIGGER events_device_status AFTER INSERT ON events
WHEN ${statusOf((f) => sqliteField(f))} IS NOT NULL
BEGIN
  UPDATE devices SET status = ${statusOf((f) => sqliteField(f))},
    status_detail = CASE WHEN json_extract(NEW.body, '$.event.success') = 0 THEN json_extract(NEW.body, '$.event.details') END,
    status_at = NEW.received_at
  WHERE uuid = NEW.device_uuid;
END`,
  // Split by splitStatements(): the semicolons inside the dollar-quoted function body stay in it.
  postgres: `
ALTER TABLE devices ADD COLUMN status TEXT NOT NULL DEFAULT 'registered';
ALTER TABLE devices ADD COLUMN status_detail TEXT;
ALTER TABLE devices ADD COLUMN status_at TEXT;
${v30Indexes};
CREATE FUNCTION events_device_status() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE b jsonb := NEW.body::jsonb; s text;
BEGIN
  s := ${statusOf((f) => pgField(f))};
  IF s IS NOT NULL THEN
    UPDATE devices SET status = s, status_detail = CASE WHEN (b->'event'->>'success') = 'false' THEN b->'event'->>'details' END,
      status_at = NEW.received_at WHERE uuid = NEW.device_uuid;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER events_device_status AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION events_device_status()`,
};

function sqliteField(f: "type" | "success" | "failed" | "details"): string {
  if (f === "type") return "json_extract(NEW.body, '$.eventType.id')";
  if (f === "success") return "json_extract(NEW.body, '$.event.success') = 1";
  if (f === "failed") return "json_extract(NEW.body, '$.event.success') = 0";
  return "coalesce(json_extract(NEW.body, '$.event.details'), '')";
}

function pgField(f: "type" | "success" | "failed" | "details"): string {
  if (f === "type") return "(b->'eventType'->>'id')";
  if (f === "success") return "(b->'event'->>'success') = 'true'";
  if (f === "failed") return "(b->'event'->>'success') = 'false'";
  return "coalesce(b->'event'->>'details', '')";
}

/**
 * The status_detail of a status (SQL): the event's details (`raw`) for a failure, "failed" or
 * "rolled-back" (the dashboard's "Last failure"), else none: a cancel's `{"canceled":true}`
 * says nothing its status does not.
 */
const detailOf = (status: string, raw: string) => `CASE WHEN ${status} IN ('failed', 'rolled-back') THEN ${raw} END`;

/**
 * The dashboard's text search (`name ILIKE '%text%' OR uuid ILIKE '%text%'`, _search.ts) read
 * every device row on PostgreSQL: 40-140 ms per 100,000 devices on a quiet machine, 360 ms with
 * the machine busy, and growing with the fleet. Trigram indexes (pg_trgm) answer a contains-search of 3
 * characters or more from the index. pg_trgm ships with PostgreSQL and is a trusted extension
 * (PostgreSQL 13 and later: a role with CREATE on the database may create it, no superuser); where it
 * cannot be created (not installed, not allowed) the migration still applies, without the
 * indexes, and the search scans as before. Building them on an existing fleet blocks writes to
 * the devices table while they build (once, at the upgrade: 5.4 s for 1,010,000 devices here).
 */
const v35Trigram = `
DO $$ BEGIN
  CREATE EXTENSION IF NOT EXISTS pg_trgm;
  CREATE INDEX devices_name_trgm ON devices USING GIN (name gin_trgm_ops);
  CREATE INDEX devices_uuid_trgm ON devices USING GIN (uuid gin_trgm_ops);
EXCEPTION WHEN OTHERS THEN
  -- Rolled back to the block's start: no extension, no index, and the search scans as before.
  RAISE NOTICE 'no trigram indexes (%): the device search reads every device', SQLERRM;
END $$`;

/**
 * Migration 34's trigger: the same status, but the device row is written only when its status or
 * its detail changes, so status_at is when the device took its present status (the start of an
 * update, the moment it failed), and the events of an update that leave it "updating" (download
 * started and completed, installation started and applied) write nothing. Every stored event used
 * to update the device's row and two of its indexes (status_at's and the status/last-seen one):
 * in a microbenchmark of the writer's transactions on a 1,000,000-device SQLite file (batches of
 * 100 events, 10,000 devices already "updating"), 30 of 48 µs of CPU per event; skipping an
 * unchanged status leaves 12 (the JSON read and the row looked up). End to end (bench/gateway-checkin)
 * the change was within the rounds' spread: the writer thread is not what limits a check-in there.
 * On PostgreSQL an unchanged row is no longer rewritten (a new row version and its WAL per event).
 * Migration 38 makes it again, with the cancel's status and the detail kept for failures only.
 */
const statusTrigger = {
  sqlite: `
DROP TRIGGER events_device_status;
CREATE TRIGGER events_device_status AFTER INSERT ON events
WHEN ${statusOf((f) => sqliteField(f))} IS NOT NULL
BEGIN
  UPDATE devices SET status = ${statusOf((f) => sqliteField(f))},
    status_detail = ${detailOf(statusOf((f) => sqliteField(f)), "json_extract(NEW.body, '$.event.details')")},
    status_at = NEW.received_at
  WHERE uuid = NEW.device_uuid
    AND (status IS NOT ${statusOf((f) => sqliteField(f))} OR status_detail IS NOT ${detailOf(statusOf((f) => sqliteField(f)), "json_extract(NEW.body, '$.event.details')")});
END`,
  postgres: `
CREATE OR REPLACE FUNCTION events_device_status() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE b jsonb := NEW.body::jsonb; s text; d text;
BEGIN
  s := ${statusOf((f) => pgField(f))};
  IF s IS NOT NULL THEN
    d := ${detailOf("s", "b->'event'->>'details'")};
    UPDATE devices SET status = s, status_detail = d, status_at = NEW.received_at
      WHERE uuid = NEW.device_uuid AND (status IS DISTINCT FROM s OR status_detail IS DISTINCT FROM d);
  END IF;
  RETURN NULL;
END $$`,
};

/**
 * Migration 38: devices a cancel left "failed" before it take "cancelled". The trigger kept the
 * cancel's details in status_detail, so they are told apart without reading events: the failed
 * devices through the status index, then their rows (on 1,000,000 devices, as many rows as are failed).
 * status_at stays: the device has had its status since the cancel.
 */
const v38Cancelled = `UPDATE devices SET status = 'cancelled', status_detail = NULL WHERE status = 'failed' AND ${cancelled("status_detail")}`;

/**
 * Labels, groups and staged rollouts (docs/rollouts.md). The group table is `device_groups`: GROUPS
 * is a keyword in both dialects' window syntax. At most one active rollout per target version: a
 * partial unique index, so two replicas creating the same rollout cannot both win. rollout_devices
 * has no foreign key to rollouts: createRollout writes both in one transaction, rollouts are never
 * deleted, and the per-row check cost 60% of creating a 100,000-device rollout on PostgreSQL.
 */
const v32Rollouts = (d: { serial: string; labels: string; real: string; labelsIndex?: string }) => `
ALTER TABLE devices ADD COLUMN labels ${d.labels};
${d.labelsIndex ? `${d.labelsIndex};` : ""}
CREATE TABLE device_groups (
  name TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  query TEXT,
  created_at TEXT NOT NULL
);
CREATE TABLE group_members (
  group_name TEXT NOT NULL REFERENCES device_groups (name) ON DELETE CASCADE,
  device_uuid TEXT NOT NULL,
  PRIMARY KEY (group_name, device_uuid)
);
CREATE TABLE rollouts (
  id TEXT PRIMARY KEY,
  target_version TEXT NOT NULL,
  group_name TEXT,
  tag TEXT,
  waves TEXT NOT NULL,
  soak_s INTEGER NOT NULL,
  max_failures_pct ${d.real} NOT NULL,
  health_window_s INTEGER NOT NULL,
  pending_timeout_s INTEGER NOT NULL,
  install_window TEXT,
  max_hold_s INTEGER,
  rollback_on_halt INTEGER NOT NULL DEFAULT 0,
  state TEXT NOT NULL,
  wave INTEGER NOT NULL,
  wave_started_at TEXT NOT NULL,
  reason TEXT,
  revision INTEGER NOT NULL,
  acknowledged_failures INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX rollouts_state ON rollouts (state, created_at);
CREATE UNIQUE INDEX rollouts_one_active ON rollouts (target_version) WHERE state IN ('running', 'paused', 'halted');
CREATE TABLE rollout_devices (
  rollout_id TEXT NOT NULL,
  device_uuid TEXT NOT NULL,
  wave INTEGER NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending',
  reason TEXT,
  healthy_since TEXT,
  hold TEXT,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (rollout_id, device_uuid)
);
CREATE INDEX rollout_devices_wave ON rollout_devices (rollout_id, wave, status);
CREATE TABLE rollout_events (
  id ${d.serial},
  rollout_id TEXT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
  at TEXT NOT NULL,
  kind TEXT NOT NULL,
  wave INTEGER,
  device_uuid TEXT,
  reason TEXT NOT NULL
);
CREATE INDEX rollout_events_rollout ON rollout_events (rollout_id, id);
CREATE INDEX rollout_events_transitions ON rollout_events (rollout_id, id) WHERE device_uuid IS NULL`;

export const MIGRATIONS: Migration[] = [
  {
    version: 1,
    description: "devices, events, app states, inventory, registration tokens, TUF metadata",
    sqlite: v1Tables("INTEGER PRIMARY KEY AUTOINCREMENT"),
    postgres: v1Tables("BIGSERIAL PRIMARY KEY"),
  },
  {
    version: 2,
    description: "gateway_meta: facts the database is bound to (the CA it was created with)",
    sqlite: "CREATE TABLE gateway_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    postgres: "CREATE TABLE gateway_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
  },
  {
    version: 3,
    // Tokens made before this keep no use limit (max_uses NULL) and devices keep their tags fixed.
    description: "registration token limits, labels and revocation; device-chosen tags; publish/admin API tokens",
    sqlite: v3Tokens,
    postgres: v3Tokens,
  },
  {
    // Numbered apart from the others so parallel work on the schema does not collide; order is by position.
    version: 20,
    description: "leases: which replica holds a singleton job (the TUF signer), until when",
    sqlite: "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at TEXT NOT NULL)",
    postgres: "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at TEXT NOT NULL)",
  },
  {
    // The dashboard filters 100,000 devices by status: a column kept current by the database itself
    // (whichever process stores the events: the route, the event-writer worker, another replica).
    version: 30,
    description: "device update status (from the latest update event) and indexes for the dashboard's device list",
    sqlite: v30Status.sqlite,
    postgres: v30Status.postgres,
  },
  {
    // Measured with 100,000 devices: counting by target or status read every table row for revoked_at
    // (250 ms); indexes that hold the columns those counts read answer from the index alone.
    version: 31,
    description: "covering indexes for the dashboard's counts by target and by status",
    sqlite: v31Indexes,
    postgres: v31Indexes,
  },
  {
    version: 32,
    description: "device labels, static and dynamic device groups, staged rollouts with their devices and events",
    sqlite: v32Rollouts({
      serial: "INTEGER PRIMARY KEY AUTOINCREMENT",
      labels: "TEXT NOT NULL DEFAULT '{}'",
      real: "REAL",
      // No index: SQLite reads labels with json_extract while it scans devices (tens of ms per 100,000).
    }),
    postgres: v32Rollouts({
      serial: "BIGSERIAL PRIMARY KEY",
      labels: "JSONB NOT NULL DEFAULT '{}'",
      real: "DOUBLE PRECISION",
      // Label queries are containment (labels @> '{"k":"v"}'): answered by this index.
      labelsIndex: "CREATE INDEX devices_labels ON devices USING GIN (labels jsonb_path_ops)",
    }),
  },
  {
    // Every stored event went into two indexes keyed by device first: the unique (device_uuid, id)
    // that deduplicates, and events_device (device_uuid, seq). With thousands of devices each new
    // event lands on its own page of each, so each index costs a page written (and on SQLite a WAL
    // frame fsynced at commit, then checkpointed) per event: on SQLite with 1,000,000 devices,
    // 10,000 of them posting, dropping events_device cut the writer's CPU per event by about a
    // third (measured in batches of 64). A device's events are still found through the unique
    // index; listing them in arrival order (the admin API) reads their seqs from it and the rows by
    // rowid on SQLite (31 ms instead of 22 for a device with 20,000 events), and sorts the device's
    // rows on PostgreSQL.
    version: 33,
    olderGatewaysMayUse: true,
    description: "events: one index per event (the (device_uuid, id) dedupe key), not two",
    sqlite: "DROP INDEX IF EXISTS events_device",
    postgres: "DROP INDEX IF EXISTS events_device",
  },
  {
    version: 34,
    olderGatewaysMayUse: true,
    description: "device status: written only when it changes (status_at: when the device took its status)",
    sqlite: statusTrigger.sqlite,
    postgres: statusTrigger.postgres,
  },
  {
    version: 35,
    olderGatewaysMayUse: true,
    description: "trigram indexes for the device search by name or uuid (PostgreSQL, where pg_trgm can be created)",
    // SQLite's LIKE scan takes 10-50 ms per 100,000 devices: no index there.
    sqlite: "SELECT 1",
    postgres: v35Trigram,
  },
  {
    // Whether PostgreSQL reads the trigram indexes for a search or every row depends on how many
    // matches it expects, and for `ILIKE '%text%'` it guesses from the names in its statistics
    // sample: with the default 100 histogram entries one of them matching made it guess 1% of the
    // fleet (1,020 of 100,000 devices for a search that matched 100), and read every row. With
    // 1,000 entries one match means a tenth of that, which the indexes win. ANALYZE then samples
    // 300,000 rows instead of 30,000 (about 0.4 s for the 100,000 devices of test/ui/perf.test.ts).
    version: 36,
    olderGatewaysMayUse: true,
    description: "device search: finer statistics on name and uuid (PostgreSQL), so a search keeps to the trigram indexes",
    sqlite: "SELECT 1",
    postgres: "ALTER TABLE devices ALTER COLUMN name SET STATISTICS 1000, ALTER COLUMN uuid SET STATISTICS 1000",
  },
  {
    // A device's pending timeout counts from its own wave's start: `rollouts advance` restarted the
    // clock of every earlier wave's undecided devices when one start was kept. JSON text, one ISO
    // time per released wave. An older gateway ignores it: a rollout it moved (its current wave's
    // entry is not wave_started_at) is read as having the one start (evaluate.ts waveStarts).
    version: 37,
    olderGatewaysMayUse: true,
    description: "rollouts: each wave's start time",
    sqlite: "ALTER TABLE rollouts ADD COLUMN wave_starts TEXT",
    postgres: "ALTER TABLE rollouts ADD COLUMN wave_starts TEXT",
  },
  {
    // A cancel on the device (`fioup cancel`) showed as "failed". An older gateway still serves,
    // stores events and registers devices on it (the trigger is the database's); its dashboard shows
    // "cancelled" as it comes, but its `devices list` and `devices show` refuse an answer that holds
    // a status their schema does not name.
    version: 38,
    olderGatewaysMayUse: true,
    description: "device status: an update cancelled on the device is \"cancelled\", not \"failed\"",
    sqlite: `${statusTrigger.sqlite};\n${v38Cancelled}`,
    postgres: `${statusTrigger.postgres};\n${v38Cancelled}`,
  },
  {
    // The tags a device says it follows (its x-ats-tags at its last check-in), kept whether or not
    // they count: a device registered with a --tag its token overrode, by a fioup before 2026-12-06,
    // followed that tag while the gateway recorded the token's, so the dashboard could not list it
    // by the tag it follows (docs/upgrading.md). JSON text; null until it reports some. An older
    // gateway neither writes nor reads it: what it serves leaves the column as it was.
    version: 39,
    olderGatewaysMayUse: true,
    description: "devices: the tags a device reports following",
    sqlite: "ALTER TABLE devices ADD COLUMN reported_tags TEXT",
    postgres: "ALTER TABLE devices ADD COLUMN reported_tags TEXT",
  },
  {
    // The sha256 of the public key a device's current certificate was issued for: a registration
    // whose answer was lost (fioup killed, a power cut, a dropped connection after the commit) is
    // sent again with the same uuid and key, and is known by it (routes/register.ts). Null for
    // devices registered before, and where an older gateway re-registers one: such a retry is then
    // refused as before.
    version: 40,
    olderGatewaysMayUse: true,
    description: "devices: the public key of the current certificate (a lost registration answer asked again)",
    sqlite: "ALTER TABLE devices ADD COLUMN key_sha256 TEXT",
    postgres: "ALTER TABLE devices ADD COLUMN key_sha256 TEXT",
  },
  {
    // The same status rule, worked out reading the event's type once (statusOf): on SQLite the
    // type's 25 reads were about a third of a stored event's CPU on the writer's connection.
    // PostgreSQL's function gets the same form, so a migrated database and a new one hold the same trigger.
    version: 41,
    olderGatewaysMayUse: true,
    description: "device status: the trigger reads an event's type once",
    sqlite: statusTrigger.sqlite,
    postgres: statusTrigger.postgres,
  },
];

/** gateway_meta's key for the last migration a gateway must know to use the database (a number). */
export const SCHEMA_NEEDED_KEY = "schema_needed";

/** The last migration this gateway knows. */
export const KNOWN_SCHEMA = Math.max(...MIGRATIONS.map((m) => m.version));

/** A newer gateway migrated the database to a schema this one cannot use; nothing was changed. */
export class DatabaseTooNewError extends Error {
  override name = "DatabaseTooNewError";
  constructor(readonly needed: number) {
    // Said after "Cannot open the SQLite database X: " or "Cannot use the database URL: " (open.ts).
    super(
      `a newer gateway has migrated it, and it needs a gateway that knows schema migration ${needed} (this one knows up to ${KNOWN_SCHEMA}); ` +
        `nothing was changed: start the newer gateway again, or put back the database backed up before the upgrade to run this one`,
    );
  }
}

/**
 * Refuses a database this gateway cannot use, before any migration runs: `stored` is gateway_meta's
 * {@link SCHEMA_NEEDED_KEY} (undefined where there is none), `applied` the versions in schema_migrations.
 * Migrations this gateway does not know with no record of what they need are taken as needed.
 * @throws {DatabaseTooNewError}
 */
export function checkSchemaUsable(applied: Iterable<number>, stored: string | undefined): void {
  const needed = storedNeed(stored) ?? Math.max(0, ...[...applied].filter((v) => v > KNOWN_SCHEMA));
  if (needed > KNOWN_SCHEMA) throw new DatabaseTooNewError(needed);
}

/**
 * The {@link SCHEMA_NEEDED_KEY} to record once this gateway's migrations are applied: the last
 * one an older gateway cannot work without, or a higher one a newer gateway recorded.
 */
export function schemaNeeded(stored: string | undefined): string {
  const ours = Math.max(...MIGRATIONS.filter((m) => !m.olderGatewaysMayUse).map((m) => m.version));
  return String(Math.max(ours, storedNeed(stored) ?? 0));
}

/** What opening a database changed in its schema: said in the gateway's start log (store/open.ts). */
export interface SchemaMigrated {
  /** The last migration applied before (0: a new database). */
  from: number;
  /** The last migration applied now. */
  to: number;
  /** Migrations this start applied. */
  ran: number;
  /** Set when the gateway that used the database before cannot any more: the migration a gateway must now know. */
  olderGatewaysNeed?: number;
}

/**
 * The {@link SchemaMigrated} of a start that found `applied` and `stored` and then applied every
 * migration it knows (undefined when none was missing).
 */
export function schemaMigrated(applied: ReadonlySet<number>, stored: string | undefined): SchemaMigrated | undefined {
  const ran = MIGRATIONS.filter((m) => !applied.has(m.version)).length;
  if (ran === 0) return undefined;
  const from = Math.max(0, ...applied);
  const needed = Number(schemaNeeded(stored));
  // Only news when the gateway that used the database before cannot any more.
  return { from, to: Math.max(KNOWN_SCHEMA, ...applied), ran, ...(applied.size > 0 && needed > from ? { olderGatewaysNeed: needed } : {}) };
}

/**
 * The start log's line for a migrated database (undefined for a new one, whose creation is no
 * news): an operator upgrading sees that the schema moved, and whether an older gateway can still
 * use the database.
 */
export function migratedLine(m: SchemaMigrated | undefined): string | undefined {
  if (!m || m.from === 0) return undefined;
  const older = m.olderGatewaysNeed !== undefined ? `; a gateway that does not know migration ${m.olderGatewaysNeed} can no longer use it (restore the backup taken before the upgrade to go back)` : "";
  return `database: schema migrated from ${m.from} to ${m.to} (${m.ran} migration${m.ran === 1 ? "" : "s"})${older}`;
}

const storedNeed = (stored: string | undefined) => (stored !== undefined && /^\d+$/.test(stored) ? Number(stored) : undefined);

/** The statements of a migration: split at semicolons outside $$-quoted bodies (PostgreSQL functions). */
export function splitStatements(sql: string): string[] {
  return sql
    .split(/(\$\$[\s\S]*?\$\$)/)
    .reduce<string[]>((out, part, i) => {
      if (i % 2 === 1) out[out.length - 1] += part; // a $$...$$ body: part of the current statement
      else {
        const [first = "", ...rest] = part.split(";");
        out[out.length - 1] += first;
        out.push(...rest);
      }
      return out;
    }, [""])
    .map((s) => s.trim())
    .filter(Boolean);
}

export const MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY,
  description TEXT NOT NULL,
  applied_at TEXT NOT NULL
)`;
