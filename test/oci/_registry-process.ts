/**
 * A docker-registry 2.8 with a test-specific `http:` / `auth:` section (token auth, TLS with
 * client certificates), started by PID under `dir` and ready when `ready()` says so. The
 * plain and htpasswd registries come from test/harness/docker-registry.ts; test/oci needs
 * configurations that harness does not offer.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Proc } from "../harness/tmp.ts";

export interface RegistryProcessOptions {
  /** Shown in errors and logs. */
  name: string;
  dir: string;
  /** `127.0.0.1:PORT` to listen on. */
  host: string;
  /** Lines appended inside `http:` (indented two spaces), e.g. `tls:`. */
  http?: string;
  /** A top-level `auth:` section. */
  auth?: string;
  /** True once the registry answers as expected. */
  ready(): Promise<boolean>;
  /** What `ready` waits for, for the timeout message. */
  readyWhat: string;
}

/** Writes `dir/config.yml`, starts the registry and waits until `ready()`; stops it if that fails. */
export async function startRegistryProcess(o: RegistryProcessOptions): Promise<Proc> {
  const config = join(o.dir, "config.yml");
  writeFileSync(
    config,
    `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${join(o.dir, "data")}
http:
  addr: ${o.host}
  secret: test-registry-${o.host.replace(/\W/g, "-")}
${o.http ?? ""}${o.auth ?? ""}`,
  );
  const proc = Proc.start({ name: o.name, cmd: ["docker-registry", "serve", config], logFile: join(o.dir, "registry.log"), env: { OTEL_TRACES_EXPORTER: "none" } });
  try {
    await proc.waitUntil(o.ready, o.readyWhat);
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return proc;
}
