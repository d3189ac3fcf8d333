/**
 * What the Kanto agent tests share: the private dockerd, a private mosquitto,
 * a docker-registry on loopback holding busybox images, a device directory
 * with an `[mqtt]` config, `fioup agent` as a real process, and an MQTT
 * back end (MQTT.js) that publishes desired states and records every
 * feedback and current-state message by activityId.
 *
 * @module
 */
import { writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import mqtt, { type MqttClient } from "mqtt";
import { startDockerd, type DockerdHandle } from "../harness/dockerd.ts";
import { startDockerRegistry, type DockerRegistryHandle } from "../harness/docker-registry.ts";
import { startMosquitto, type MosquittoHandle } from "../harness/mosquitto.ts";
import type { BusyboxImageOptions } from "../harness/images.ts";
import { Proc, tempDir } from "../harness/tmp.ts";
import { pushImage, ROOT } from "../fioup/_setup.ts";

export interface Msg {
  topic: string;
  activityId: string;
  payload: any;
  raw: string;
  at: number;
}

/** A long-running busybox "hello-world": prints a greeting and its environment, then sleeps. */
export const helloImage = (greeting = "Hello from fioup agent"): BusyboxImageOptions => ({
  cmd: ["sh", "-c", `echo '${greeting}'; env; exec sleep 1000000`],
});

export type Config = { key: string; value: string }[];

export const component = (id: string, image: string, config: Config = [], version = "1") => ({
  id,
  version,
  config: [{ key: "image", value: image }, ...config],
});

export const desiredState = (activityId: string, components: unknown[], domainConfig: Config = []) => ({
  activityId,
  timestamp: Date.now(),
  payload: { domains: [{ id: "containers", config: domainConfig, components }] },
});

export class KantoRig {
  readonly msgs: Msg[] = [];
  agent?: Proc;
  private waiters = new Set<() => void>();

  private constructor(
    readonly dockerd: DockerdHandle,
    readonly broker: MosquittoHandle,
    readonly registry: DockerRegistryHandle,
    readonly dir: string,
    /** Unique per rig: the agent's instance name and the prefix of every container name. */
    readonly tag: string,
    public client: MqttClient,
  ) {}

  /** A second registry that wants Basic credentials, which the agent's config gives it. */
  authRegistry?: DockerRegistryHandle;

  static async start(name: string, opts: { authRegistry?: boolean } = {}): Promise<KantoRig> {
    const [dockerd, broker, registry, dir, authRegistry] = await Promise.all([
      startDockerd(),
      startMosquitto(),
      startDockerRegistry(),
      tempDir("kanto-"),
      opts.authRegistry ? startDockerRegistry({ htpasswd: { user: "robot", password: "s3cret" } }) : undefined,
    ]);
    const tag = `k${process.pid}${name}`;
    const client = await mqtt.connectAsync(broker.url, { clientId: `backend-${tag}`, reconnectPeriod: 200 });
    const rig = new KantoRig(dockerd, broker, registry, dir, tag, client);
    rig.authRegistry = authRegistry;
    rig.listen();
    await client.subscribeAsync(["containersupdate/desiredstatefeedback", "containersupdate/currentstate"], { qos: 1 });
    mkdirSync(join(dir, "var/sota"), { recursive: true });
    writeFileSync(
      join(dir, "var/sota/sota.toml"),
      [
        "[fioup]",
        `docker_host = "${dockerd.host}"`,
        "[mqtt]",
        `url = "${broker.url}"`,
        `instance = "${tag}"`,
        `insecure_registries = ["${registry.host}"]`,
        ...(authRegistry ? [`[mqtt.registries."${authRegistry.host}"]`, `username = "robot"`, `password = "s3cret"`] : []),
        "",
      ].join("\n"),
    );
    return rig;
  }

  private listen(): void {
    this.client.on("message", (topic, buf) => {
      const raw = buf.toString();
      if (!raw) return;
      let doc: any;
      try {
        doc = JSON.parse(raw);
      } catch {
        return;
      }
      this.msgs.push({ topic, activityId: doc.activityId, payload: doc.payload, raw, at: Date.now() });
      for (const w of this.waiters) w();
    });
  }

  /** A container name unique to this rig. */
  name(n: string): string {
    return `${this.tag}-${n}`;
  }

  /** Pushes a busybox image to the loopback registry; returns `host/repo:tag`. */
  push(repo: string, opts: BusyboxImageOptions, tag = `t${process.pid}`): Promise<string> {
    return pushImage(this.registry, repo, tag, opts);
  }

  /**
   * Starts `fioup agent` (a real process) and waits for its first current state; `env` adds to its environment (e.g. FIOUP_FAULT).
   * `connected: false` returns at once (an agent meant to die while it recovers never connects).
   */
  async startAgent(args: string[] = [], env: Record<string, string> = {}, { connected = true } = {}): Promise<Proc> {
    const since = this.msgs.length;
    const logFile = join(this.dir, "agent.log");
    this.agent = Proc.start({
      name: "fioup agent",
      cmd: [process.execPath, join(ROOT, "fioup/main.ts"), "agent", "--sota-dir", join(this.dir, "var/sota"), ...args],
      env: { FIOUP_ROOT: this.dir, DOCKER_HOST: this.dockerd.host, ...env },
      cwd: ROOT,
      logFile,
    });
    if (!connected) return this.agent;
    await this.waitFor((m) => m.topic === "containersupdate/currentstate" && m.activityId.startsWith("initial-current-state-"), 30_000, since);
    return this.agent;
  }

  /** Waits for a message matching `pred` (among those from index `since`). */
  async waitFor(pred: (m: Msg) => boolean, timeoutMs = 60_000, since = 0): Promise<Msg> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.msgs.slice(since).find(pred);
      if (found) return found;
      if (Date.now() > deadline) {
        throw new Error(`No matching MQTT message after ${timeoutMs} ms; agent log:\n${this.agent?.logTail(3000) ?? ""}\nlast messages:\n${this.msgs.slice(-5).map((m) => m.raw.slice(0, 600)).join("\n")}`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, 200);
        const self = this;
        function done() {
          clearTimeout(t);
          self.waiters.delete(done);
          resolve();
        }
        this.waiters.add(done);
      });
    }
  }

  feedbacks(activityId: string): any[] {
    return this.msgs.filter((m) => m.topic === "containersupdate/desiredstatefeedback" && m.activityId === activityId).map((m) => m.payload);
  }

  /** Publishes a desired state and waits for its final feedback (COMPLETED, INCOMPLETE or IDENTIFICATION_FAILED). */
  async apply(activityId: string, components: unknown[], domainConfig: Config = []): Promise<any> {
    await this.client.publishAsync("containersupdate/desiredstate", JSON.stringify(desiredState(activityId, components, domainConfig)), { qos: 1 });
    return await this.final(activityId);
  }

  async final(activityId: string, timeoutMs = 90_000): Promise<any> {
    const m = await this.waitFor(
      (m) => m.topic === "containersupdate/desiredstatefeedback" && m.activityId === activityId && ["COMPLETED", "INCOMPLETE", "IDENTIFICATION_FAILED"].includes(m.payload?.status),
      timeoutMs,
    );
    return m.payload;
  }

  /**
   * The final feedbacks of an activity the agent finished, counted once the
   * agent has also published the current state that closes it (after the
   * last feedback, on the same connection): a back end must be told the end once.
   */
  async finalCount(activityId: string): Promise<number> {
    await this.waitFor((m) => m.topic === "containersupdate/currentstate" && m.activityId === activityId);
    return this.feedbacks(activityId).filter((f) => ["COMPLETED", "INCOMPLETE"].includes(f?.status)).length;
  }

  /** `docker ps -a` of this rig's containers: name → {id, state, image}. */
  async containers(): Promise<Map<string, { id: string; state: string; image: string }>> {
    const out = await this.dockerd.docker("ps", "-a", "--no-trunc", "--filter", `name=^/${this.tag}-`, "--format", "{{.Names}}\t{{.ID}}\t{{.State}}\t{{.Image}}");
    const map = new Map<string, { id: string; state: string; image: string }>();
    for (const line of out.trim().split("\n").filter(Boolean)) {
      const [name, id, state, image] = line.split("\t");
      map.set(name!, { id: id!, state: state!, image: image! });
    }
    return map;
  }

  /** Removes this rig's containers, stops the agent, the broker, the registry and drops the dockerd reference. */
  async stop(): Promise<void> {
    await this.agent?.stop(5000);
    await this.client.endAsync(true).catch(() => {});
    const ids = (await this.dockerd.docker("ps", "-aq", "--filter", `name=^/${this.tag}-`).catch(() => "")).trim();
    if (ids) await this.dockerd.docker("rm", "-f", ...ids.split("\n")).catch(() => {});
    await Promise.all([this.broker.stop(), this.registry.stop(), this.authRegistry?.stop()]);
    await this.dockerd.stop();
  }
}

/** Consecutive duplicates removed: ["A","A","B"] → ["A","B"]. */
export const squash = (xs: string[]) => xs.filter((x, i) => x !== xs[i - 1]);

/** The statuses one component went through across a list of feedback payloads. */
export const actionTrail = (feedbacks: any[], name: string) =>
  squash(feedbacks.flatMap((f) => (f.actions ?? []).filter((a: any) => a.component.id === `containers:${name}`).map((a: any) => a.status)));
