/**
 * A private OCI registry (Debian's `docker-registry`, CNCF distribution 2.8) on 127.0.0.1 with
 * filesystem storage in a temp dir, delete enabled and optional htpasswd auth: the "any OCI
 * registry" that gateway publish and fioup must work with besides the embedded one.
 *
 * @module
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, Proc, tempDir } from "./tmp.ts";

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
  const data = join(dir, "data");
  mkdirSync(data);
  const port = await freePort();
  let auth = "";
  if (opts.htpasswd) {
    const hash = await Bun.password.hash(opts.htpasswd.password, { algorithm: "bcrypt", cost: 4 });
    writeFileSync(join(dir, "htpasswd"), `${opts.htpasswd.user}:${hash}\n`);
    auth = `auth:\n  htpasswd:\n    realm: test-registry\n    path: ${join(dir, "htpasswd")}\n`;
  }
  const config = join(dir, "config.yml");
  writeFileSync(
    config,
    `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${data}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:${port}
  secret: test-harness-secret
${auth}`,
  );
  const proc = Proc.start({
    name: "docker-registry",
    cmd: ["docker-registry", "serve", config],
    logFile: join(dir, "registry.log"),
    env: { OTEL_TRACES_EXPORTER: "none" },
  });
  const url = `http://127.0.0.1:${port}`;
  await proc.waitUntil(
    async () => {
      const res = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      return res.status === 200 || res.status === 401;
    },
    `answer on ${url}/v2/`,
  );
  return { url, host: `127.0.0.1:${port}`, dir, pid: proc.pid, stop: () => proc.stop() };
}
