/**
 * A private OCI registry (Debian's `docker-registry`, CNCF distribution 2.8) on 127.0.0.1 with
 * filesystem storage in a temp dir, delete enabled and optional htpasswd auth: the "any OCI
 * registry" that gateway publish and fioup must work with besides the embedded one.
 *
 * The one place a test starts docker-registry: tests that need another configuration (TLS with
 * client certificates, token auth, the shipped deploy/ example) write it with `registryConfig`
 * or render their own, and start it with `startRegistryProcess`.
 *
 * @module
 */
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { renderDeployConfig } from "./proxies.ts";
import { freePort, portAnswers, Proc, tempDir } from "./tmp.ts";

export interface DockerRegistryOptions {
  /** Require Basic auth with this user and password (htpasswd, bcrypt). */
  htpasswd?: { user: string; password: string };
}

export interface DockerRegistryHandle {
  /** `http://127.0.0.1:PORT` */
  url: string;
  /** `127.0.0.1:PORT`, the registry part of image references. */
  host: string;
  /** Temp dir holding config.yml, htpasswd, data/ (storage) and registry.log. */
  dir: string;
  pid: number;
  stop(): Promise<void>;
}

/** A config.yml for a test registry: filesystem storage in `dir/data`, listening on `host`; `storage` and `http` lines (indented two spaces) go inside their sections, `auth` is a top-level section. */
export function registryConfig(o: { dir: string; host: string; storage?: string; http?: string; auth?: string }): string {
  return `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${join(o.dir, "data")}
${o.storage ?? ""}http:
  addr: ${o.host}
  secret: test-registry-${o.host.replace(/\W/g, "-")}
${o.http ?? ""}${o.auth ?? ""}`;
}

export interface RegistryProcessOptions {
  /** Shown in errors and logs. */
  name: string;
  /** Holds config.yml, data/ and registry.log. */
  dir: string;
  /** The whole config.yml (registryConfig, or a rendered example). */
  config: string;
  /** True once the registry answers as expected. */
  ready(): Promise<boolean>;
  /** What `ready` waits for, for the timeout message. */
  readyWhat: string;
}

/**
 * Writes `dir/config.yml`, starts `docker-registry serve` by PID and waits until `ready()`; stops
 * it if that fails.
 * @throws {ServiceStartError} If it is not ready within the wait.
 */
export async function startRegistryProcess(o: RegistryProcessOptions): Promise<Proc> {
  mkdirSync(join(o.dir, "data"), { recursive: true });
  const config = join(o.dir, "config.yml");
  writeFileSync(config, o.config);
  const proc = Proc.start({ name: o.name, cmd: ["docker-registry", "serve", config], logFile: join(o.dir, "registry.log"), env: { OTEL_TRACES_EXPORTER: "none" } });
  try {
    await proc.waitUntil(o.ready, o.readyWhat);
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return proc;
}

/**
 * Starts `docker-registry serve` and waits until `/v2/` answers (200, or 401 with auth).
 *
 * @example
 * ```ts
 * const reg = await startDockerRegistry({ htpasswd: { user: "ci", password: "s3cret" } });
 * // skopeo copy --dest-tls-verify=false --dest-creds ci:s3cret oci:DIR:latest docker://${reg.host}/app:1
 * afterAll(() => reg.stop());
 * ```
 * @throws {ServiceStartError} If it does not answer within 30 s.
 */
export async function startDockerRegistry(opts: DockerRegistryOptions = {}): Promise<DockerRegistryHandle> {
  const dir = await tempDir("docker-registry-");
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  let auth = "";
  if (opts.htpasswd) {
    const hash = await Bun.password.hash(opts.htpasswd.password, { algorithm: "bcrypt", cost: 4 });
    writeFileSync(join(dir, "htpasswd"), `${opts.htpasswd.user}:${hash}\n`);
    auth = `auth:\n  htpasswd:\n    realm: test-registry\n    path: ${join(dir, "htpasswd")}\n`;
  }
  const storage = "  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n";
  const url = `http://${host}`;
  const proc = await startRegistryProcess({
    name: "docker-registry",
    dir,
    config: registryConfig({ dir, host, storage, auth }),
    readyWhat: `answer on ${url}/v2/`,
    ready: async () => {
      const res = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      return res.status === 200 || res.status === 401;
    },
  });
  return { url, host, dir, pid: proc.pid, stop: () => proc.stop() };
}

/**
 * A docker-registry from deploy/docker-registry/config.yml whose token realm is `realmUrl`/token
 * (a gateway run with `--external-registry-service SERVICE`), trusting the token-signing
 * certificate `tokenCert` (a gateway's DATA/pki/registry-token.pem), as an operator sets it up.
 */
export async function startTokenRegistry(o: { realmUrl: string; tokenCert: string; service?: string }): Promise<{ proc: Proc; host: string }> {
  const dir = await tempDir("ext-registry-");
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  copyFileSync(o.tokenCert, join(dir, "token.pem"));
  const proc = await startRegistryProcess({
    name: "docker-registry",
    dir,
    config: renderDeployConfig("docker-registry/config.yml", {
      LISTEN: host,
      DATA: join(dir, "data"),
      GATEWAY_URL: o.realmUrl,
      SERVICE: o.service ?? "fleet-registry",
      ISSUER: "main-gateway",
      TOKEN_CERT: join(dir, "token.pem"),
    }),
    ready: () => portAnswers(port),
    readyWhat: `port ${port}`,
  });
  return { proc, host };
}
