/**
 * What the fioup e2e tests share: a real gateway (`gateway serve`, own data
 * dir, loopback, random port), an upstream docker-registry holding busybox
 * httpd images, `gateway publish` of a one-app containers repo, the private
 * dockerd, and a device (FIOUP_ROOT temp dir) driven through `fioup` itself.
 *
 * @module
 */
import { Database } from "bun:sqlite";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { startDockerd, type DockerdHandle } from "../harness/dockerd.ts";
import { startDockerRegistry, type DockerRegistryHandle } from "../harness/docker-registry.ts";
import { startFaultProxy, type FaultProxy } from "../harness/fault-proxy.ts";
import { writeOciLayout, type BuiltImage, type BusyboxImageOptions } from "../harness/images.ts";
import type { Subprocess } from "bun";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { freePort, run, tempDir, until } from "../harness/tmp.ts";
import { commit, containersRepo } from "../publish/_setup.ts";

export const ROOT = join(import.meta.dir, "..", "..");
const BUN = process.execPath;

export interface TestGateway {
  url: string;
  host: string;
  dataDir: string;
  adminToken: string;
  pid: number;
  stop(): Promise<void>;
  admin<T>(path: string, init?: RequestInit): Promise<T>;
}

/** The harness gateway in the shape these helpers take (admin calls as JSON). */
export function asTestGateway(gw: GatewayHandle): TestGateway {
  return {
    url: gw.url,
    host: gw.host,
    dataDir: gw.dataDir,
    adminToken: gw.adminToken,
    pid: gw.pid,
    stop: () => gw.stop(),
    async admin<T>(path: string, init: RequestInit = {}) {
      const headers = new Headers(init.headers);
      headers.set("content-type", "application/json");
      const res = await gw.adminFetch(path, { ...init, headers });
      if (!res.ok) throw new Error(`admin ${path}: ${res.status} ${await res.text()}`);
      return (await res.json()) as T;
    },
  };
}

/** The harness gateway (`gateway serve`, fresh data dir) with devices polling every second. */
export async function startTestGateway(args: string[] = []): Promise<TestGateway> {
  return asTestGateway(await startGateway({ args: ["--polling-seconds", "1", ...args] }));
}

/** A device that reaches its gateway through a fault proxy, and what it runs against. */
export interface ProxiedDevice {
  dockerd: DockerdHandle;
  upstream: DockerRegistryHandle;
  gw: TestGateway;
  proxy: FaultProxy;
  device: Device;
  pub: Publisher;
  /** Host port the app answers on. */
  port: number;
  stop(): Promise<void>;
}

/**
 * dockerd, an upstream registry and a gateway whose public URL is a fault proxy in front of it
 * (TUF, registry and events all cross the proxy); a one-service httpd app `app` (image
 * `repo:v1` saying `body`) published as version 1; a device with the drop-in `config`
 * (conf.d/90-test.toml), registered through the proxy, not updated yet.
 */
export async function startProxiedDevice(o: { app: string; repo: string; body: string; config: string }): Promise<ProxiedDevice> {
  const proxy = await startFaultProxy(0, 1);
  const proxyUrl = `https://127.0.0.1:${proxy.port}`;
  const [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startTestGateway(["--public-url", proxyUrl])]);
  proxy.target = Number(new URL(gw.url).port);
  const viaProxy: TestGateway = { ...gw, url: proxyUrl, host: `127.0.0.1:${proxy.port}` };
  const port = await freePort();
  const { ref } = await pushImageDetailed(upstream, o.repo, "v1", httpdImage(o.body));
  const pub = await Publisher.create(viaProxy, upstream, { [`${o.app}/docker-compose.yml`]: httpdCompose(ref, port) });
  const device = await Device.create(dockerd);
  device.dropIn("90-test.toml", o.config);
  await device.register(viaProxy);
  await pub.publish(1);
  return {
    dockerd, upstream, gw, proxy, device, pub, port,
    async stop() {
      await device.cleanup([o.app]).catch(() => {});
      await proxy.close();
      await Promise.all([gw.stop(), upstream.stop()]);
      await dockerd.stop();
    },
  };
}

/** What a CLI run gave: exit code, output, and stdout parsed as JSON when it parses. */
export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  json: any;
}

/** Waits for a spawned CLI and collects its result; echoes it to stderr when `verbose` is set. */
export async function collectCli(p: Subprocess<any, "pipe", "pipe">, label: string, verbose?: string): Promise<CliResult> {
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  if (verbose) process.stderr.write(`$ ${label} -> ${code}\n${stderr}`);
  let json: any;
  try {
    json = JSON.parse(stdout);
  } catch {
    json = undefined;
  }
  return { code, stdout, stderr, json };
}

/** Two httpd apps (their images in an upstream registry) published as version 1: where most device tests start. */
export interface TwoAppFleet {
  dockerd: DockerdHandle;
  upstream: DockerRegistryHandle;
  gw: TestGateway;
  pub: Publisher;
  /** Host ports the two apps answer on. */
  ports: [number, number];
  stop(): Promise<void>;
}

/** Starts dockerd, an upstream registry and a gateway, and publishes `apps` (name, image repo, httpd body). */
export async function startTwoAppFleet(apps: [{ name: string; repo: string; body: string }, { name: string; repo: string; body: string }]): Promise<TwoAppFleet> {
  const [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startTestGateway()]);
  const ports: [number, number] = [await freePort(), await freePort()];
  const images = await Promise.all(apps.map((a) => pushImage(upstream, a.repo, "v1", httpdImage(a.body))));
  const pub = await Publisher.create(gw, upstream, Object.fromEntries(apps.map((a, i) => [`${a.name}/docker-compose.yml`, httpdCompose(images[i]!, ports[i]!)])));
  await pub.publish(1);
  return {
    dockerd,
    upstream,
    gw,
    pub,
    ports,
    async stop() {
      await Promise.all([gw.stop(), upstream.stop()]);
      await dockerd.stop();
    },
  };
}

/** Pushes a busybox image (OCI layout → skopeo) into `reg` as `repo:tag`; returns `host/repo:tag`. */
export async function pushImage(reg: DockerRegistryHandle, repo: string, tag: string, opts: BusyboxImageOptions): Promise<string> {
  return (await pushImageDetailed(reg, repo, tag, opts)).ref;
}

/** Like pushImage, also returning the built image (digests of config and layers). */
export async function pushImageDetailed(
  reg: DockerRegistryHandle,
  repo: string,
  tag: string,
  opts: BusyboxImageOptions,
): Promise<{ ref: string; image: BuiltImage }> {
  const dir = await tempDir("fioup-img-");
  const layout = await writeOciLayout(dir, { ...opts, tag: `${repo}:${tag}` });
  await run(["skopeo", "copy", "--dest-tls-verify=false", `oci:${dir}:${tag}`, `docker://${reg.host}/${repo}:${tag}`]);
  return { ref: `${reg.host}/${repo}:${tag}`, image: layout.images[0]! };
}

/** Incompressible bytes (a layer that takes a while to fetch). */
export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  return out;
}

/** An httpd image serving `body` at / (busybox httpd), with a shared busybox base layer. */
export const httpdImage = (body: string): BusyboxImageOptions => ({
  cmd: ["httpd", "-f", "-p", "80", "-h", "/www"],
  exposedPorts: ["80/tcp"],
  layers: [{ "/www/index.html": body }],
});

/** A containers repo (git) to publish from, with helpers to change it and publish. */
export class Publisher {
  private constructor(
    readonly gw: TestGateway,
    readonly upstream: DockerRegistryHandle,
    readonly dir: string,
  ) {}

  static async create(gw: TestGateway, upstream: DockerRegistryHandle, files: Record<string, string>): Promise<Publisher> {
    return new Publisher(gw, upstream, await containersRepo(files));
  }

  async commit(files: Record<string, string>): Promise<void> {
    for (const p of Object.keys(files)) mkdirSync(dirname(join(this.dir, p)), { recursive: true });
    await commit(this.dir, files);
  }

  /** `gateway publish` of the checkout as `version` for hwid amd64-linux. */
  async publish(version: number, extra: string[] = []): Promise<void> {
    await run(
      [
        ...(process.env.GATEWAY_BIN ? [process.env.GATEWAY_BIN] : [BUN, join(ROOT, "gateway/main.ts")]), "publish", "--containers", this.dir, "--ref", "refs/heads/master",
        "--server", this.gw.url, "--token", this.gw.adminToken, "--hwid", "amd64-linux", "--version", String(version),
        "--insecure-registry", this.upstream.host, "--platform", "linux/amd64", ...extra,
      ],
      { cwd: ROOT },
    );
  }
}

/**
 * A compose file for one httpd app on 127.0.0.1:port. busybox as PID 1 ignores
 * SIGTERM, so a short grace period keeps `compose stop` from waiting 10 s.
 */
export function httpdCompose(image: string, port: number, extraServices = ""): string {
  return `services:\n  web:\n    image: ${image}\n    stop_grace_period: 1s\n    ports:\n      - "127.0.0.1:${port}:80"\n${extraServices}`;
}

/** {@link httpdCompose}'s app with a healthcheck that passes only `after` seconds after its start. */
export function slowHealthCompose(image: string, port: number, after: number): string {
  return `services:
  web:
    image: ${image}
    command: ["sh", "-c", "(sleep ${after}; touch /tmp/ok) & exec httpd -f -p 80 -h /www"]
    stop_grace_period: 1s
    ports:
      - "127.0.0.1:${port}:80"
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ok"]
      interval: 1s
      timeout: 1s
      retries: 1000
`;
}

export type FioupResult = CliResult;

/** A device: its FIOUP_ROOT, and `fioup` run against the private dockerd. */
export class Device {
  private constructor(
    readonly root: string,
    readonly dockerd: DockerdHandle,
  ) {}

  static async create(dockerd: DockerdHandle): Promise<Device> {
    return new Device(await tempDir("fioup-device-"), dockerd);
  }

  get sotaDir() {
    return join(this.root, "var/sota");
  }
  get storeDir() {
    return join(this.root, "var/sota/reset-apps");
  }

  env(): Record<string, string> {
    return { FIOUP_ROOT: this.root, ...this.dockerd.env };
  }

  /** Writes the owner's drop-in `/etc/sota/conf.d/<name>` (TOML), which beats every other config file. */
  dropIn(name: string, toml: string): void {
    mkdirSync(join(this.root, "etc/sota/conf.d"), { recursive: true });
    writeFileSync(join(this.root, "etc/sota/conf.d", name), toml);
  }

  /** fioup as `bun fioup/main.ts`, or the compiled binary named by $FIOUP_BIN; `env` adds to its environment (FIOUP_FAULT: fioup/fault.ts). */
  spawn(args: string[], env: Record<string, string> = {}) {
    const cmd = process.env.FIOUP_BIN ? [process.env.FIOUP_BIN] : [BUN, join(ROOT, "fioup/main.ts")];
    return Bun.spawn([...cmd, ...args], { env: { ...process.env, ...this.env(), ...env }, stdout: "pipe", stderr: "pipe", cwd: ROOT });
  }

  /**
   * Runs `fioup <args>` and SIGKILLs it as soon as `when()` holds (asked every 5 ms); returns
   * whether it was killed (false: the run ended first, said on stderr for whoever reads the
   * failure). Throws if neither happens within `timeoutMs`. When `when()` holds, fioup is stopped
   * (SIGSTOP) and `when()` asked again: the kill lands in the moment seen, or fioup goes on.
   */
  async killWhen(when: () => Promise<boolean> | boolean, args: string[] = ["update"], timeoutMs = 60_000): Promise<boolean> {
    const p = this.spawn(args);
    let exited = false;
    void p.exited.then(() => (exited = true));
    let killed = false;
    const held = async () => {
      if (exited || !(await when())) return false;
      p.kill("SIGSTOP");
      await Bun.sleep(20); // every thread stopped, its write done
      if (await when()) return true;
      p.kill("SIGCONT");
      return false;
    };
    try {
      killed = await until(`fioup ${args.join(" ")} to reach the kill point`, held, (hit) => hit || exited, timeoutMs, 5);
    } finally {
      p.kill("SIGKILL");
      const code = await p.exited;
      if (!killed) console.error(`killWhen: fioup ${args.join(" ")} exited ${code} before the kill point; state ${this.updateState()?.state}; stderr:\n${(await new Response(p.stderr).text()).slice(-2000)}`);
    }
    return killed;
  }

  async fioup(...args: string[]): Promise<FioupResult> {
    return await collectCli(this.spawn([...args, "--format", "json"]), `fioup ${args.join(" ")}`, process.env.FIOUP_TEST_VERBOSE);
  }

  async register(gw: TestGateway, extra: string[] = []): Promise<string> {
    const r = await this.fioup("register", "--server", gw.url, "--token", gw.adminToken, "--hwid", "amd64-linux", "--name", "test-device", ...extra);
    if (r.code !== 0) throw new Error(`register failed (${r.code}): ${r.stderr}`);
    return r.json.uuid;
  }

  /** The device DB's view of the pending or last update (read-only, safe while fioup runs). */
  updateState(): { state: string; bytesFetched: number } | undefined {
    const path = join(this.sotaDir, "fioup.db");
    if (!existsSync(path)) return undefined;
    const db = new Database(path, { readonly: true });
    try {
      const r = db.query<{ state: string; bytes_fetched: number }, []>("SELECT state, bytes_fetched FROM updates ORDER BY id DESC LIMIT 1").get();
      return r ? { state: r.state, bytesFetched: r.bytes_fetched } : undefined;
    } catch {
      return undefined;
    } finally {
      db.close();
    }
  }

  /** Where the state was kept while {@link stateOnTmpfs} holds it. */
  private keptState?: string;

  /** Moves the device's state (fioup.db, the blob store) onto a tmpfs of its own of `size` ("64m"), copied in; {@link stateOffTmpfs} undoes it. */
  async stateOnTmpfs(size: string): Promise<void> {
    const sota = this.sotaDir;
    const kept = `${sota}.kept`;
    renameSync(sota, kept);
    mkdirSync(sota);
    const m = await run(["mount", "-t", "tmpfs", "-o", `size=${size}`, "tmpfs", sota]);
    if (m.code !== 0) {
      rmSync(sota, { recursive: true, force: true });
      renameSync(kept, sota);
      throw new Error(`Cannot mount a tmpfs on ${sota}: ${m.stderr}`);
    }
    this.keptState = kept;
    cpSync(kept, sota, { recursive: true });
  }

  async stateOffTmpfs(): Promise<void> {
    if (!this.keptState) return;
    await run(["umount", this.sotaDir]);
    rmSync(this.sotaDir, { recursive: true, force: true });
    renameSync(this.keptState, this.sotaDir);
    this.keptState = undefined;
  }

  /**
   * Takes every free byte of the state's file system with other data: nearly all at once, then the
   * last blocks (a download may still write a few meanwhile). Returns the files that free it again.
   */
  async fillStateDisk(): Promise<string[]> {
    const filler = join(this.sotaDir, "other-data");
    const fs = statfsSync(this.sotaDir);
    const most = fs.bavail * fs.bsize - (8 << 20);
    if (most > 0) await run(["fallocate", "-l", String(most), filler]); // none on a disk nearly full already (filled once more)
    await run(["dd", "if=/dev/zero", `of=${filler}-rest`, "bs=4096"], { allowFail: true }); // ends at "No space left on device"
    return [filler, `${filler}-rest`];
  }

  /** The kv records fioup.db keeps for an update while it runs (`<what>:<update id>`), of any update. */
  updateRecords(): string[] {
    const db = new Database(join(this.sotaDir, "fioup.db"), { readonly: true });
    try {
      const ids = new Set(db.query<{ id: string }, []>("SELECT id FROM updates").all().map((r) => r.id));
      return db
        .query<{ key: string }, []>("SELECT key FROM kv")
        .all()
        .map((r) => r.key)
        .filter((k) => ids.has(k.slice(k.lastIndexOf(":") + 1)));
    } finally {
      db.close();
    }
  }

  /** Bytes in partial downloads. */
  async ingestBytes(): Promise<number> {
    const dir = join(this.storeDir, "ingest");
    let n = 0;
    for (const f of await readdir(dir).catch(() => [] as string[])) n += (await stat(join(dir, f)).catch(() => ({ size: 0 }))).size;
    return n;
  }

  /** Blobs in the device store: digest → size. */
  async blobs(): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    const dir = join(this.storeDir, "blobs/sha256");
    for (const f of await readdir(dir).catch(() => [] as string[])) out.set(`sha256:${f}`, (await stat(join(dir, f))).size);
    return out;
  }

  /** Blobs of the store that do not hash to their name (none, whatever was cut when). */
  corruptBlobs(): string[] {
    const dir = join(this.storeDir, "blobs/sha256");
    return readdirSync(dir).filter((f) => new Bun.CryptoHasher("sha256").update(readFileSync(join(dir, f))).digest("hex") !== f);
  }

  /** Removes every container, network and app of this device's projects. */
  async cleanup(projects: string[]): Promise<void> {
    for (const p of projects) {
      const ids = (await this.dockerd.docker("ps", "-aq", "--filter", `label=com.docker.compose.project=${p}`)).trim();
      if (ids) await this.dockerd.docker("rm", "-f", ...ids.split("\n"));
    }
  }
}

/** GET http://127.0.0.1:port/ body, or undefined if nothing answers. */
/**
 * The common start of the update tests: a one-service httpd app `app` at v1 (image `repo:v1`
 * saying `body`), published through `gw` and installed on `device`, which this registers.
 * Returns the publisher for the next versions and the device's uuid.
 */
export async function deviceOnV1(o: {
  gw: TestGateway;
  upstream: DockerRegistryHandle;
  device: Device;
  app: string;
  repo: string;
  port: number;
  body: string;
  /** The v1 image; default httpdImage(body). */
  image?: BusyboxImageOptions;
}): Promise<{ pub: Publisher; uuid: string }> {
  // The device registers while the image is built and pushed (neither needs the other).
  const [pub, uuid] = await Promise.all([
    pushImageDetailed(o.upstream, o.repo, "v1", o.image ?? httpdImage(o.body)).then(({ ref }) =>
      Publisher.create(o.gw, o.upstream, { [`${o.app}/docker-compose.yml`]: httpdCompose(ref, o.port) }),
    ),
    o.device.register(o.gw),
  ]);
  await pub.publish(1);
  const r = await o.device.fioup("update");
  if (r.code !== 0) throw new Error(`v1 update failed: ${r.stderr}`);
  return { pub, uuid };
}

/** A device on target 1 of one app, with its own dockerd, registry and gateway (polling every second). */
export interface DeviceRig {
  app: string;
  repo: string;
  dockerd: DockerdHandle;
  upstream: DockerRegistryHandle;
  /** The gateway's handle (servedBytes reads its metrics); `gw` is the same gateway. */
  gwHandle: GatewayHandle;
  gw: TestGateway;
  device: Device;
  /** The loopback port the app serves on. */
  port: number;
  pub: Publisher;
  uuid: string;
  /** Removes the app's containers and stops what was started. */
  stop(): Promise<void>;
}

/** The start several device tests share: {@link deviceOnV1} on fresh services. */
export async function deviceRig(o: { app: string; repo: string; body: string; image?: BusyboxImageOptions }): Promise<DeviceRig> {
  const [dockerd, upstream, gwHandle] = await Promise.all([startDockerd(), startDockerRegistry(), startGateway({ args: ["--polling-seconds", "1"] })]);
  const gw = asTestGateway(gwHandle);
  const device = await Device.create(dockerd);
  const port = await freePort();
  const { pub, uuid } = await deviceOnV1({ gw, upstream, device, app: o.app, repo: o.repo, port, body: o.body, ...(o.image ? { image: o.image } : {}) });
  return {
    app: o.app, repo: o.repo, dockerd, upstream, gwHandle, gw, device, port, pub, uuid,
    async stop() {
      await device.cleanup([o.app]).catch(() => undefined);
      await Promise.all([gwHandle.stop(), upstream.stop()]);
      await dockerd.stop();
    },
  };
}

export async function httpGet(port: number): Promise<string | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(3000) });
    return await res.text();
  } catch {
    return undefined;
  }
}

export { freePort, startDockerd, startDockerRegistry };
export type { DockerdHandle, DockerRegistryHandle };
