/**
 * Versioned schema migrations for both backends. Each entry runs once, in
 * order, recorded in `schema_migrations`; never edit an applied entry, append
 * a new one. JSON is kept as text so both dialects share one row shape.
 *
 * @module
 */
export interface Migration {
  version: number;
  description: string;
  sqlite: string;
  postgres: string;
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
];

export const MIGRATIONS_TABLE = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY,
  description TEXT NOT NULL,
  applied_at TEXT NOT NULL
)`;
