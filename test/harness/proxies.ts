/**
 * Debian's HAProxy and nginx, started privately on 127.0.0.1 from the example configs the project
 * ships in deploy/ (placeholders filled in), in front of gateways started by the harness. Neither
 * runs as a system service here: each runs in the foreground under the harness and is stopped by PID.
 *
 * @module
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { startGateway, startReplica, type GatewayHandle } from "./gateway.ts";
import { freePort, portAnswers, Proc, tempDir } from "./tmp.ts";

const REPO = resolve(import.meta.dir, "../..");
const GATEWAY_MAIN = join(REPO, "gateway", "main.ts");

export interface ProxyHandle {
  /** `https://127.0.0.1:PORT` (devices' URL) */
  url: string;
  port: number;
  pid: number;
  config: string;
  stop(): Promise<void>;
}

/** Reads deploy/<path> and replaces each `@NAME@`; a placeholder left unfilled is an error. */
export function renderDeployConfig(path: string, values: Record<string, string>): string {
  let text = readFileSync(join(REPO, "deploy", path), "utf8");
  for (const [k, v] of Object.entries(values)) text = text.replaceAll(`@${k}@`, v);
  // Only config lines count: comments mention placeholders too.
  const left = text.split("\n").filter((l) => !l.trim().startsWith("#")).join("\n").match(/@[A-Z_0-9]+@/g);
  if (left) throw new Error(`deploy/${path}: placeholders left unfilled: ${[...new Set(left)].join(", ")}`);
  return text;
}

/**
 * The PEM files a proxy needs from a gateway data dir, and its proxy certificate, issued by
 * `gateway proxy-cert` as an operator does (the replicas believe a TLS-hop proxy's header only
 * with it).
 */
async function gatewayPems(dir: string, dataDir: string) {
  const cert = readFileSync(join(dataDir, "pki", "server.pem"), "utf8");
  const key = readFileSync(join(dataDir, "pki", "server.key"), "utf8");
  const files = { ca: join(dir, "ca.pem"), cert: join(dir, "server.pem"), key: join(dir, "server.key"), both: join(dir, "server-both.pem") };
  writeFileSync(files.ca, readFileSync(join(dataDir, "pki", "ca.pem")));
  writeFileSync(files.cert, cert);
  writeFileSync(files.key, key, { mode: 0o600 });
  writeFileSync(files.both, cert.trimEnd() + "\n" + key, { mode: 0o600 });
  const issue = Bun.spawn([process.execPath, GATEWAY_MAIN, "proxy-cert", "--data", dataDir, "--name", "proxy", "--out", dir, "--days", "7", "--format", "json"], { stdout: "pipe", stderr: "pipe" });
  const [code, out, err] = await Promise.all([issue.exited, new Response(issue.stdout).text(), new Response(issue.stderr).text()]);
  if (code !== 0) throw new Error(`gateway proxy-cert failed (exit ${code}): ${err}`);
  const proxy = JSON.parse(out) as { cert: string; key: string; pem: string };
  return { ...files, proxyCert: proxy.cert, proxyKey: proxy.key, proxyPem: proxy.pem };
}

async function run(name: string, dir: string, cmd: string[], port: number, config: string): Promise<ProxyHandle> {
  const proc = Proc.start({ name, cmd, logFile: join(dir, `${name}.log`) });
  await proc.waitUntil(() => portAnswers(port), `port ${port}`, 20_000);
  return { url: `https://127.0.0.1:${port}`, port, pid: proc.pid, config, stop: () => proc.stop(5000) };
}

/**
 * HAProxy from deploy/haproxy/<file> in front of the replicas (`host:port` each), with the TLS
 * material of `dataDir` and a proxy certificate issued from it. Pass `port` when the gateway's
 * --public-url was chosen before, `source` (another loopback address, 127.0.0.2) for the proxy to
 * connect to the replicas from (a --trust-proxy narrower than the devices' 127.0.0.1), and
 * `proxyCert: false` to leave the proxy certificate out of the config (an upgrade not finished:
 * the replicas then ignore the proxy's header).
 */
export async function startHaproxy(opts: { file?: string; dataDir: string; replicas: string[]; port?: number; source?: string; proxyCert?: boolean }): Promise<ProxyHandle> {
  const dir = await tempDir("haproxy-");
  const port = opts.port ?? (await freePort());
  const pems = await gatewayPems(dir, opts.dataDir);
  let text = renderDeployConfig(`haproxy/${opts.file ?? "gateway.cfg"}`, {
    LISTEN: `127.0.0.1:${port}`,
    SERVER_PEM: pems.both,
    CA_PEM: pems.ca,
    PROXY_PEM: pems.proxyPem,
    REPLICA_1: opts.replicas[0]!,
  });
  if (opts.proxyCert === false) text = text.replace(` crt ${pems.proxyPem}`, "");
  // More replicas: repeat the example's server line for each.
  const line = text.split("\n").find((l) => l.trim().startsWith("server replica1 "))!;
  const sourced = opts.source ? `${line} source ${opts.source}` : line;
  text = text.replace(line, opts.replicas.map((r, i) => sourced.replace("replica1", `replica${i + 1}`).replace(opts.replicas[0]!, r)).join("\n"));
  const config = join(dir, "haproxy.cfg");
  writeFileSync(config, text);
  return run("haproxy", dir, ["haproxy", "-db", "-f", config], port, config);
}

/** nginx from deploy/nginx/<file> (default gateway.conf) in front of the replicas, like {@link startHaproxy}. */
export async function startNginx(opts: { file?: string; dataDir: string; replicas: string[]; replicaName?: string; port?: number; proxyCert?: boolean }): Promise<ProxyHandle> {
  const dir = await tempDir("nginx-");
  const port = opts.port ?? (await freePort());
  const pems = await gatewayPems(dir, opts.dataDir);
  for (const d of ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]) mkdirSync(join(dir, d));
  let text = renderDeployConfig(`nginx/${opts.file ?? "gateway.conf"}`, {
    LISTEN: `127.0.0.1:${port}`,
    SERVER_CERT: pems.cert,
    SERVER_KEY: pems.key,
    CA_PEM: pems.ca,
    PROXY_CERT: pems.proxyCert,
    PROXY_KEY: pems.proxyKey,
    REPLICA_1: opts.replicas[0]!,
    ...(opts.replicaName ? { REPLICA_NAME: opts.replicaName } : {}),
    PREFIX: dir,
  });
  if (opts.proxyCert === false) text = text.split("\n").filter((l) => !/^\s*proxy_ssl_certificate(_key)? /.test(l)).join("\n");
  const line = text.split("\n").find((l) => l.trim().startsWith(`server ${opts.replicas[0]};`))!;
  text = text.replace(line, opts.replicas.map((r) => line.replace(opts.replicas[0]!, r)).join("\n"));
  const config = join(dir, "nginx.conf");
  writeFileSync(config, text);
  return run("nginx", dir, ["nginx", "-e", "stderr", "-p", dir, "-c", config], port, config);
}

/**
 * `count` gateway replicas on database `db`, sharing one registry directory, behind HAProxy from
 * deploy/haproxy/gateway.cfg: the replicas trust the proxy's forwarded certificates and name the
 * proxy as their public URL. `args` are added to every replica's `gateway serve`.
 */
export async function startReplicasBehindHaproxy(opts: { db: string; count: number; args?: string[] }): Promise<{ replicas: GatewayHandle[]; proxy: ProxyHandle }> {
  const proxyPort = await freePort();
  const args = [
    "--registry-dir", join(await tempDir("shared-registry-"), "registry"),
    "--public-url", `https://127.0.0.1:${proxyPort}`,
    "--trust-proxy", "127.0.0.1",
    "--client-cert-header", "x-ssl-client-cert",
    ...(opts.args ?? []),
  ];
  const first = await startGateway({ db: opts.db, args });
  const replicas = [first];
  // The first replica has set the database up; the others start together.
  replicas.push(...(await Promise.all(Array.from({ length: opts.count - 1 }, () => startReplica(first, { db: opts.db, args })))));
  const proxy = await startHaproxy({ dataDir: first.dataDir, replicas: replicas.map((r) => r.host), port: proxyPort });
  return { replicas, proxy };
}
