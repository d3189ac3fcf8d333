/**
 * Starts a real `gateway serve` for the publish tests. Stand-in with the
 * contract's shape until test/harness/gateway.ts lands; then this file only
 * re-exports it.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, Proc, tempDir, waitFor } from "../harness/tmp.ts";

export interface GatewayHandle {
  url: string;
  host: string;
  dataDir: string;
  adminToken: string;
  caPem: string;
  pid: number;
  stop(): Promise<void>;
  kill(): Promise<void>;
}

const ROOT = join(import.meta.dir, "..", "..");

export async function startGateway(opts: { args?: string[] } = {}): Promise<GatewayHandle> {
  const dataDir = await tempDir("gateway-");
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const logFile = join(dataDir, "..", `${dataDir.split("/").pop()}.log`);
  const proc = Proc.start({
    name: "gateway",
    cmd: [process.execPath, join(ROOT, "gateway", "main.ts"), "serve", "--data", dataDir, "--listen", host, "--public-url", `https://${host}`, ...(opts.args ?? [])],
    logFile,
  });
  await waitFor({
    service: "gateway",
    what: "listening line",
    ready: () => readFileSync(logFile, "utf8").includes("gateway listening on"),
    logFile,
    alive: () => proc.running,
    timeoutMs: 30_000,
  });
  return {
    url: `https://${host}`,
    host,
    dataDir,
    adminToken: readFileSync(join(dataDir, "admin-token"), "utf8").trim(),
    caPem: readFileSync(join(dataDir, "pki", "ca.pem"), "utf8"),
    pid: proc.pid,
    stop: () => proc.stop(),
    kill: () => proc.kill(),
  };
}
