/**
 * Starts the real gateway (`bun gateway/main.ts serve`, or a compiled binary) on 127.0.0.1
 * with its data dir in a temp dir, for integration and e2e tests. Restarting with the same
 * `dataDir` reuses its port, so devices configured with the old URL reach the new process
 * (crash and restart tests).
 *
 * @module
 */
import { cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { postgresBinDir, startPostgres, type PostgresHandle } from "./postgres.ts";
import { freePort, Proc, run, tempDir } from "./tmp.ts";

const REPO = resolve(import.meta.dir, "../..");

export interface GatewayOptions {
  /**
   * `--db` (e.g. a startPostgres() URL). Default: the sqlite file in the data dir, or, when
   * `OTA_TEST_DB=postgres`, a fresh database in one private PostgreSQL cluster per test process
   * (the switch that runs every gateway test on PostgreSQL).
   */
  db?: string;
  /** Extra `serve` arguments, e.g. ["--factory", "acme"]. */
  args?: string[];
  /** Reuse this data dir (restart after stop/kill); default a fresh temp dir. */
  dataDir?: string;
  /** Port on 127.0.0.1; default the port this dataDir used last, else a free one. */
  port?: number;
  /** Run this instead of `bun gateway/main.ts` (e.g. ["dist/gateway-linux-x64"]); default $GATEWAY_BIN when set. */
  command?: string[];
  env?: Record<string, string | undefined>;
}

export interface GatewayHandle {
  /** `https://127.0.0.1:PORT` */
  url: string;
  /** `127.0.0.1:PORT`: the registry host of app and image references. */
  host: string;
  port: number;
  dataDir: string;
  /** Contents of DATA/admin-token. */
  adminToken: string;
  /** Contents of DATA/pki/ca.pem: the CA the server certificate chains to. */
  caPem: string;
  pid: number;
  logFile: string;
  /** `fetch` against the gateway, trusting its CA, with the admin token unless a header is given. */
  adminFetch(path: string, init?: RequestInit): Promise<Response>;
  /** SIGTERM, SIGKILL after 10 s. */
  stop(): Promise<void>;
  /** SIGKILL now (crash tests). */
  kill(): Promise<void>;
}

/** What `gateway serve` logs when it becomes the TUF signer (gateway/gateway.ts): replica tests wait for it. */
export const SIGNER_LOG = "gateway: this replica is the TUF signer";

const PORT_FILE = ".harness-port";

/**
 * Starts `gateway serve` and waits for its `gateway listening on https://...` log line.
 *
 * @example
 * ```ts
 * const gw = await startGateway();
 * const res = await gw.adminFetch("/admin/devices");
 * await gw.kill();
 * const again = await startGateway({ dataDir: gw.dataDir }); // same URL, same keys
 * ```
 * @throws {ServiceStartError} If it exits or is not listening within 60 s (message has its log tail).
 */
export async function startGateway(opts: GatewayOptions = {}): Promise<GatewayHandle> {
  const dataDir = opts.dataDir ?? join(await tempDir("gateway-"), "data");
  mkdirSync(dataDir, { recursive: true });
  const portFile = join(dataDir, PORT_FILE);
  const port = opts.port ?? (existsSync(portFile) ? Number(readFileSync(portFile, "utf8")) : await freePort());
  writeFileSync(portFile, String(port));
  const host = `127.0.0.1:${port}`;
  const url = `https://${host}`;
  const logFile = join(await tempDir("gateway-log-"), "gateway.log");
  const db = opts.db ?? (process.env.OTA_TEST_DB === "postgres" ? await databaseFor(dataDir) : undefined);
  const cmd = [
    ...(opts.command ?? (process.env.GATEWAY_BIN ? [process.env.GATEWAY_BIN] : [process.execPath, join(REPO, "gateway/main.ts")])),
    "serve",
    "--data", dataDir,
    "--listen", host,
    ...(opts.args?.includes("--public-url") ? [] : ["--public-url", url]), // a test behind a proxy names the proxy's
    ...(db ? ["--db", db] : []),
    "--metrics-per-device", // servedBytes() below reads each device's bytes
    ...(opts.args ?? []),
  ];
  const proc = Proc.start({ name: "gateway", cmd, cwd: REPO, env: opts.env, logFile });
  await proc.waitForLog(`gateway listening on ${url}`, 60_000);
  const adminToken = readFileSync(join(dataDir, "admin-token"), "utf8").trim();
  const caPem = readFileSync(join(dataDir, "pki", "ca.pem"), "utf8");
  return {
    url,
    host,
    port,
    dataDir,
    adminToken,
    caPem,
    pid: proc.pid,
    logFile,
    adminFetch(path: string, init: RequestInit = {}): Promise<Response> {
      const headers = new Headers(init.headers);
      if (!headers.has("authorization")) headers.set("authorization", `Bearer ${adminToken}`);
      return fetch(`${url}${path}`, { ...init, headers, tls: { ca: caPem } } as RequestInit);
    },
    stop: () => proc.stop(10_000),
    kill: () => proc.kill(),
  };
}

/**
 * Another replica of `first` on the same database: a new data dir with the same content (CA, TUF
 * keys, tokens), as an operator copies it, and its own port.
 */
export async function startReplica(first: GatewayHandle, opts: Omit<GatewayOptions, "dataDir" | "port"> & { db: string }): Promise<GatewayHandle> {
  const dataDir = join(await tempDir("replica-"), "data");
  cpSync(first.dataDir, dataDir, { recursive: true, filter: (src) => !src.endsWith(PORT_FILE) && !src.endsWith("serve.json") });
  return startGateway({ ...opts, dataDir });
}

let sharedPostgres: Promise<PostgresHandle> | undefined;
const DB_FILE = ".harness-db";

/** One database per gateway data dir (a restart with the same dir gets the same one). */
async function databaseFor(dataDir: string): Promise<string> {
  const file = join(dataDir, DB_FILE);
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  sharedPostgres ??= startPostgres();
  const pg = await sharedPostgres;
  const url = await pg.createDatabase(`gw_${process.pid}_${Math.random().toString(36).slice(2, 10)}`);
  writeFileSync(file, url);
  return url;
}

/** The PostgreSQL --db the harness gave the gateway of `dataDir` (`OTA_TEST_DB=postgres`), or undefined (SQLite). */
export const harnessDb = (dataDir: string): string | undefined => {
  const file = join(dataDir, DB_FILE);
  return existsSync(file) ? readFileSync(file, "utf8").trim() : undefined;
};

/**
 * A backup as an operator takes it on the backend of the gateway of `dataDir` (gateway/README.md,
 * Backup and restore): the flags `gateway backup` then needs, and on PostgreSQL the database's half
 * taken with it, a pg_dump beside `file` (as the backup's hint names it, .pgdump for .backup). On
 * SQLite nothing: the database is in the backup.
 *
 * @returns The `--db` flag for `gateway backup`, or [] on SQLite.
 */
export async function backupOfDatabase(dataDir: string, file: string): Promise<string[]> {
  const db = harnessDb(dataDir);
  if (!db) return [];
  await run([join(postgresBinDir(), "pg_dump"), "--format=custom", `--file=${dumpBeside(file)}`, db]);
  return ["--db", db];
}
const dumpBeside = (file: string) => `${file.replace(/\.backup$/, "")}.pgdump`;

/**
 * After `gateway restore FILE --data restoredDir`, what a PostgreSQL operator does when the database
 * was lost with the gateway (restore's own advice): a new, empty database with the dump
 * {@link backupOfDatabase} took pg_restored into it (--no-owner), which the harness then gives the
 * restored gateway as its --db. The registry storage went too (a backup without --with-registry):
 * the database records the old one, so that gateway starts with `--registry-change`. On SQLite nothing.
 *
 * @returns The extra `serve` arguments the restored gateway needs, [] on SQLite.
 */
export async function restoreOfDatabase(file: string, restoredDir: string): Promise<string[]> {
  if (testDbKind() !== "postgres") return [];
  const pg = await (sharedPostgres ??= startPostgres());
  const url = await pg.createDatabase(`restored_${process.pid}_${Math.random().toString(36).slice(2, 10)}`);
  await run([join(postgresBinDir(), "pg_restore"), "--no-owner", `--dbname=${url}`, dumpBeside(file)]);
  writeFileSync(join(restoredDir, DB_FILE), url);
  return ["--registry-change"];
}

/**
 * `gateway backup`'s or `gateway restore`'s stderr without the note they add on PostgreSQL (where the
 * database's half is: the pg_dump to take with the backup, when to pg_restore it), so a test expects
 * "" on either backend when nothing else was said.
 */
export const withoutDatabaseNote = (stderr: string): string =>
  stderr.replace(/^backup: the database is PostgreSQL and is not in this file[\s\S]*?\nIt is pg_restored only if[^\n]*\n/m, "").replace(/^restore: the database is PostgreSQL and is not in the backup[\s\S]*?newer than this backup\n/m, "");

/** Which store the harness gateways use: "postgres" with `OTA_TEST_DB=postgres`, else "sqlite". */
export const testDbKind = (): "postgres" | "sqlite" => (process.env.OTA_TEST_DB === "postgres" ? "postgres" : "sqlite");

/** The value of one unlabelled sample in the gateway's /metrics; throws naming it when /metrics has none. */
export async function metricSample(gw: Pick<GatewayHandle, "adminFetch">, name: string): Promise<number> {
  const text = await (await gw.adminFetch("/metrics")).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`/metrics has no ${name}`);
  return Number(line.slice(name.length + 1));
}

/**
 * Registry bytes the gateway served to one client (`device:<uuid>`, `admin`), read from its
 * /metrics: the count kept by the gateway, independent of what the device reports.
 */
export async function servedBytes(gw: Pick<GatewayHandle, "adminFetch">, client: string): Promise<{ blob: number; manifest: number; delta: number }> {
  const text = await (await gw.adminFetch("/metrics")).text();
  const read = (kind: string) => {
    const line = text.split("\n").find((l) => l.startsWith(`gateway_registry_bytes_served_total{kind="${kind}",client="${client}"} `));
    return line ? Number(line.split(" ").pop()) : 0;
  };
  return { blob: read("blob"), manifest: read("manifest"), delta: read("delta") };
}
