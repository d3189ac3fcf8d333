/**
 * Starts the real gateway (`bun gateway/main.ts serve`, or a compiled binary) on 127.0.0.1
 * with its data dir in a temp dir, for integration and e2e tests. Restarting with the same
 * `dataDir` reuses its port, so devices configured with the old URL reach the new process
 * (crash and restart tests).
 *
 * @module
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { freePort, Proc, tempDir } from "./tmp.ts";

const REPO = resolve(import.meta.dir, "../..");

export interface GatewayOptions {
  /** `--db` (e.g. a startPostgres() URL); default the sqlite file in the data dir. */
  db?: string;
  /** Extra `serve` arguments, e.g. ["--factory", "acme"]. */
  args?: string[];
  /** Reuse this data dir (restart after stop/kill); default a fresh temp dir. */
  dataDir?: string;
  /** Port on 127.0.0.1; default the port this dataDir used last, else a free one. */
  port?: number;
  /** Run this instead of `bun gateway/main.ts` (e.g. ["dist/gateway-linux-x64"]). */
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
  const cmd = [
    ...(opts.command ?? [process.execPath, join(REPO, "gateway/main.ts")]),
    "serve",
    "--data", dataDir,
    "--listen", host,
    "--public-url", url,
    ...(opts.db ? ["--db", opts.db] : []),
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
