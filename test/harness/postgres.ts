/**
 * A private PostgreSQL cluster (whichever major version is installed) for the gateway's PostgreSQL store: initdb into a temp dir
 * owned by the postgres user, then the server itself (run as postgres via setpriv, so its PID
 * is ours to stop) listening on 127.0.0.1:PORT only, unix socket in the temp dir, trust auth,
 * durability off for speed.
 *
 * @module
 */
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { userInfo } from "node:os";
import { join } from "node:path";
import { freePort, Proc, run, tempDir } from "./tmp.ts";

/**
 * Where initdb and postgres live: $OTA_TEST_PG_BIN, else `pg_config --bindir` when that
 * directory has initdb (Debian's pg_config may belong to libpq-dev only), else the newest
 * /usr/lib/postgresql/<major>/bin. Debian keeps them off PATH, and the major version moves
 * with each release, so none is hard-coded.
 *
 * @throws {Error} If no PostgreSQL server binaries are installed.
 */
export function postgresBinDir(): string {
  const fromEnv = process.env.OTA_TEST_PG_BIN;
  if (fromEnv) return fromEnv;
  const hasServer = (dir: string) => existsSync(join(dir, "initdb")) && existsSync(join(dir, "postgres"));
  const pgConfig = Bun.spawnSync(["pg_config", "--bindir"], { stdout: "pipe", stderr: "ignore" });
  if (pgConfig.success) {
    const dir = pgConfig.stdout.toString().trim();
    if (dir && hasServer(dir)) return dir;
  }
  const root = "/usr/lib/postgresql";
  const majors = existsSync(root)
    ? readdirSync(root).filter((v) => /^\d+(\.\d+)?$/.test(v)).sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a))
    : [];
  for (const major of majors) if (hasServer(join(root, major, "bin"))) return join(root, major, "bin");
  throw new Error("Cannot start PostgreSQL: no initdb found (pg_config --bindir, /usr/lib/postgresql/*/bin); install the postgresql package");
}

export interface PostgresHandle {
  /** `postgres://postgres@127.0.0.1:PORT/postgres` */
  url: string;
  host: string;
  port: number;
  /** Temp dir: data/ (the cluster), sock/ (unix socket), postgres.log. */
  dir: string;
  pid: number;
  /** Creates an empty database and returns its URL (one per test keeps tests independent). */
  createDatabase(name: string): Promise<string>;
  /** Fast shutdown (SIGINT) by PID; SIGKILL after 10 s. */
  stop(): Promise<void>;
}

function postgresIds(): { uid: number; gid: number } {
  const passwd = readFileSync("/etc/passwd", "utf8");
  const line = passwd.split("\n").find((l) => l.startsWith("postgres:"));
  if (!line) throw new Error("Cannot start PostgreSQL: no postgres user (install the postgresql package)");
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}

/** The data dir of a cluster initdb made and nobody started: made once per process, copied by each start. */
let pristine: Promise<string> | undefined;
function pristineCluster(bin: string, asPostgres: string[], ids: { uid: number; gid: number } | undefined): Promise<string> {
  pristine ??= (async () => {
    const dir = await tempDir("postgres-initdb-");
    chmodSync(dir, 0o755);
    const data = join(dir, "data");
    mkdirSync(data, { mode: 0o700 });
    if (ids) chownSync(data, ids.uid, ids.gid);
    await run([
      ...asPostgres,
      join(bin, "initdb"),
      "-D", data,
      "-U", "postgres",
      "-A", "trust",
      "-E", "UTF8",
      "--locale=C",
      "--no-sync",
      "--no-instructions",
    ], { env: { HOME: dir } });
    return data;
  })().catch((err) => {
    pristine = undefined;
    throw err;
  });
  return pristine;
}

/**
 * Starts a fresh cluster and waits until it accepts connections.
 *
 * @example
 * ```ts
 * const pg = await startPostgres();
 * const store = await PostgresStore.connect(await pg.createDatabase("t1"));
 * afterAll(() => pg.stop());
 * ```
 * @throws {ServiceStartError} If the server is not ready within 30 s (message has its log tail).
 */
export async function startPostgres(opts: { durable?: boolean } = {}): Promise<PostgresHandle> {
  const dir = await tempDir("postgres-");
  chmodSync(dir, 0o755);
  const data = join(dir, "data");
  const sock = join(dir, "sock");
  const asRoot = userInfo().uid === 0;
  const ids = asRoot ? postgresIds() : undefined;
  for (const d of [data, sock]) {
    mkdirSync(d, { mode: 0o700 });
    if (ids) chownSync(d, ids.uid, ids.gid);
  }
  const bin = postgresBinDir();
  const asPostgres = ids ? ["setpriv", `--reuid=${ids.uid}`, `--regid=${ids.gid}`, "--init-groups"] : [];
  // A copy of this process's one initdb'd cluster (owner and modes kept): the same fresh cluster, in a tenth of the time.
  await run(["cp", "-a", `${await pristineCluster(bin, asPostgres, ids)}/.`, data]);
  const port = await freePort();
  const proc = Proc.start({
    name: "postgres",
    cmd: [
      ...asPostgres,
      join(bin, "postgres"),
      "-D", data,
      "-p", String(port),
      "-k", sock,
      "-c", "listen_addresses=127.0.0.1",
      // Tests need no durability; `durable` (benchmarks) keeps PostgreSQL's defaults: a commit waits for its WAL flush.
      ...(opts.durable ? [] : ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]),
      "-c", "max_connections=200",
      "-c", "shared_buffers=32MB",
    ],
    env: { HOME: dir },
    logFile: join(dir, "postgres.log"),
    stopSignal: "SIGINT",
  });
  await proc.waitForLog("database system is ready to accept connections", 30_000);
  const host = `127.0.0.1:${port}`;
  const url = `postgres://postgres@${host}/postgres`;
  return {
    url,
    host,
    port,
    dir,
    pid: proc.pid,
    async createDatabase(name: string): Promise<string> {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`Cannot create database "${name}": use [a-z0-9_] only`);
      await run(["psql", "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", `CREATE DATABASE ${name}`]);
      return `postgres://postgres@${host}/${name}`;
    },
    stop: () => proc.stop(10_000),
  };
}
