/**
 * The fleet the rollout acceptance tests share: a real gateway (`gateway serve`, SQLite or a
 * database in the harness's private PostgreSQL cluster) with a fast rollout tick, 200
 * simulated devices (test/harness/sim-devices.ts: own certificates, TUF verified with
 * lib/tuf, real events and apps-states) and 2 real fioup devices on the private dockerd,
 * each running its own app of the published target (shortlist), every device on version 1.
 *
 * @module
 */
import { createHash } from "node:crypto";
import type { RolloutDetail, RolloutEventRow, RolloutRequest } from "../../lib/api/admin.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import type { PostgresHandle } from "../harness/postgres.ts";
import { SimFleet, type SimDevice, type SimOutcome } from "../harness/sim-devices.ts";
import {
  asTestGateway, Device, freePort, httpdImage, Publisher, pushImage, startDockerd, startDockerRegistry,
  type DockerdHandle, type DockerRegistryHandle, type TestGateway,
} from "../fioup/_setup.ts";

export type DbKind = "sqlite" | "postgres";

/** The tag `gateway publish` gives a push to master (no factory-config rule), which every device follows. */
export const TAG = "master";

/** How long each wave soaks and each device must stay healthy, in seconds (short: tests). */
export const SOAK_S = 1;
export const HEALTH_WINDOW_S = 1;
/**
 * Seconds between the gateway's rollout checks: well under the soak and health window, so a
 * wave advances (or a rollout halts or completes) soon after its time is up, not up to a
 * second later at every step.
 */
export const ROLLOUT_TICK_S = "0.25";
/** The fleet's gateway flags, at its first start and every restart. */
const GATEWAY_ARGS = ["--polling-seconds", "1", "--rollout-tick", ROLLOUT_TICK_S];

export interface RealDevice {
  device: Device;
  uuid: string;
  app: string;
  port: number;
}

/** A compose file: httpd on 127.0.0.1:port; `failingHealthcheck` adds a healthcheck that never passes. */
export function appCompose(image: string, port: number, failingHealthcheck = false): string {
  const hc = failingHealthcheck
    ? `    healthcheck:\n      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/missing"]\n      interval: 1s\n      timeout: 1s\n      retries: 1\n`
    : "";
  return `services:\n  web:\n    image: ${image}\n    stop_grace_period: 1s\n    ports:\n      - "127.0.0.1:${port}:80"\n${hc}`;
}

export class RolloutFleet {
  /** Outcome of a simulated install, by target version (default healthy). */
  readonly simOutcome = new Map<string, SimOutcome>();

  private constructor(
    public gw: GatewayHandle,
    public t: TestGateway,
    readonly db: string | undefined,
    readonly dockerd: DockerdHandle,
    readonly upstream: DockerRegistryHandle,
    readonly pub: Publisher,
    readonly sims: SimFleet,
    readonly real: [RealDevice, RealDevice],
    readonly images: Map<string, string>,
  ) {}

  /**
   * Starts everything and brings every device to version 1: the real ones through `fioup
   * update`, the simulated ones by installing it like fioup would.
   */
  static async start(kind: DbKind, pg: PostgresHandle | undefined, sims = 200): Promise<RolloutFleet> {
    const tag = `ro${process.pid}${kind[0]}`;
    const db = kind === "postgres" ? await pg!.createDatabase(`${tag}_${Math.random().toString(36).slice(2, 8)}`) : undefined;
    const [dockerd, upstream, gw] = await Promise.all([
      startDockerd(),
      startDockerRegistry(),
      startGateway({ ...(db ? { db } : {}), args: GATEWAY_ARGS }),
    ]);
    const t = asTestGateway(gw);
    const ports = [await freePort(), await freePort()];
    const apps = [`${tag}a`, `${tag}b`];
    const images = new Map<string, string>();
    const versions = ["1", "2", "4", "5"];
    const refs = await Promise.all(versions.map((v) => pushImage(upstream, `test/${tag}`, `v${v}`, httpdImage(`hello v${v}`))));
    versions.forEach((v, i) => images.set(v, refs[i]!));
    const compose = (v: string, failing = false) =>
      Object.fromEntries(apps.map((a, i) => [`${a}/docker-compose.yml`, appCompose(images.get(v)!, ports[i]!, failing)]));
    const pub = await Publisher.create(t, upstream, compose("1"));
    let fleet!: RolloutFleet;
    const behaviour = (_d: SimDevice, target: { entry: { custom: { version: string } } }) => fleet.simOutcome.get(target.entry.custom.version) ?? "healthy";
    const [simFleet, real] = await Promise.all([
      SimFleet.register(gw, { count: sims, tags: [TAG], behaviour, concurrency: 24 }),
      (async () => {
        const devices = await Promise.all(apps.map(() => Device.create(dockerd)));
        const uuids = await Promise.all(devices.map((d, i) => d.register(t, ["--tag", TAG, "--apps", apps[i]!])));
        await pub.publish(1);
        const r = await Promise.all(devices.map((d) => d.fioup("update")));
        for (const x of r) if (x.code !== 0) throw new Error(`v1 update failed: ${x.stderr}`);
        return devices.map((device, i) => ({ device, uuid: uuids[i]!, app: apps[i]!, port: ports[i]! })) as [RealDevice, RealDevice];
      })(),
    ]);
    fleet = new RolloutFleet(gw, t, db, dockerd, upstream, pub, simFleet, real, images);
    fleet.composeFor = compose;
    await simFleet.cycle();
    for (const d of simFleet.devices) if (d.current !== "amd64-linux-1") throw new Error(`${d.name} is not on version 1`);
    return fleet;
  }

  composeFor!: (v: string, failing?: boolean) => Record<string, string>;

  /** Commits the apps at `v` (image of `imageVersion`) and publishes them as version `v`. */
  async publish(v: string, opts: { imageVersion?: string; failingHealthcheck?: boolean } = {}): Promise<void> {
    await this.pub.commit(this.composeFor(opts.imageVersion ?? v, opts.failingHealthcheck));
    await this.pub.publish(Number(v));
  }

  async createRollout(req: RolloutRequest): Promise<RolloutDetail> {
    const d = await this.t.admin<RolloutDetail>("/admin/rollouts", { method: "POST", body: JSON.stringify(req) });
    for (const e of d.events) this.events.set(e.id, e);
    return d;
  }

  /** Every rollout event any show() returned, by id (a show lists only the latest 50). */
  readonly events = new Map<number, RolloutEventRow>();

  async show(id: string): Promise<RolloutDetail> {
    const d = await this.t.admin<RolloutDetail>(`/admin/rollouts/${id}`);
    for (const e of d.events) this.events.set(e.id, e);
    return d;
  }

  /** The kinds of the events seen of rollout `id`, oldest first. */
  eventKinds(id: string): string[] {
    return [...this.events.values()].filter((e) => e.rolloutId === id).sort((a, b) => a.id - b.id).map((e) => e.kind);
  }

  /** Every device's uuid, the real ones first. */
  get uuids(): string[] {
    return [...this.real.map((r) => r.uuid), ...this.sims.devices.map((d) => d.uuid)];
  }

  /** SIGKILLs the gateway and starts it again on the same data dir, port and database. */
  async killAndRestart(): Promise<void> {
    await this.gw.kill();
    this.gw = await startGateway({ dataDir: this.gw.dataDir, ...(this.db ? { db: this.db } : {}), args: GATEWAY_ARGS });
    this.t = asTestGateway(this.gw);
  }

  async stop(): Promise<void> {
    for (const r of this.real) await r.device.cleanup([r.app]).catch(() => {});
    await Promise.all([this.gw.stop(), this.upstream.stop()]);
    await this.dockerd.stop();
  }
}

/**
 * The wave of each device by the documented rule, computed here independently of the engine:
 * `first` devices, then the rest by sha256(uuid) ascending; wave k holds the devices up to
 * ceil(percent_k * N / 100) (at least 1, and at least every `first` device in wave 0).
 */
export function expectedWaves(audience: string[], waves: number[], first: string[] = []): Map<string, number> {
  const rest = audience.filter((u) => !first.includes(u)).sort((a, b) => {
    const ha = createHash("sha256").update(a).digest("hex");
    const hb = createHash("sha256").update(b).digest("hex");
    return ha < hb ? -1 : ha > hb ? 1 : 0;
  });
  const order = [...first, ...rest];
  const out = new Map<string, number>();
  let wave = 0;
  for (const [i, uuid] of order.entries()) {
    for (;;) {
      const size = Math.max(1, Math.ceil((waves[wave]! * order.length) / 100 - 1e-9), wave === 0 ? first.length : 0);
      if (i < size) break;
      wave++;
    }
    out.set(uuid, wave);
  }
  return out;
}

/** Members per status, summed over the waves of `detail.counts`. */
export function statusCounts(detail: RolloutDetail): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of detail.counts) out[c.status] = (out[c.status] ?? 0) + c.devices;
  return out;
}

/** Manifest bytes the gateway's registry served to each device, from its /metrics. */
export async function manifestBytesByDevice(gw: GatewayHandle): Promise<Map<string, number>> {
  const text = await (await gw.adminFetch("/metrics")).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^gateway_registry_bytes_served_total\{kind="manifest",client="device:([0-9a-f-]+)"\} (\d+)$/gm)) out.set(m[1]!, Number(m[2]));
  return out;
}

/** The gateway's gateway_rollout_transitions_total counters from /metrics, by kind. */
export async function transitionCounts(gw: GatewayHandle): Promise<Record<string, number>> {
  const text = await (await gw.adminFetch("/metrics")).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^gateway_rollout_transitions_total\{kind="([a-z-]+)"\} (\d+)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}
