/**
 * Simulated devices for fleet-scale tests: each registers through the gateway's own
 * registration flow (its own ECDSA key and CSR, a registration token, POST /devices), then
 * behaves like fioup's daemon over real mTLS: it refreshes the TUF chain with lib/tuf (tuf-js,
 * the device's own trusted root from its registration), picks a target with lib/tuf's
 * selection rules, pulls the target's app manifests from the gateway's registry with its
 * client certificate, and posts the update events and apps-states fioup posts
 * (fioup/update/*-step.ts, fioup/report.ts). Nothing is faked on the gateway side: what a
 * test then reads from the admin API is what the gateway made of real device traffic.
 *
 * A device's outcome for a target is chosen by the test (`behaviour`): "healthy" (installs,
 * apps report healthy), "unhealthy" (installs, then its apps report unhealthy, as an app
 * whose healthcheck fails after start), "start-fails" (the start step fails and the
 * device rolls back, reporting EcuInstallationCompleted with success false).
 *
 * @module
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { AppState, DeviceEvent, EventTypeId, RegistrationResponse } from "../../lib/api/index.ts";
import type { Target, TargetEntry } from "../../lib/api/target.ts";
import { selectTarget, verifyAndLoadTargets, type VerifiedTargets } from "../../lib/tuf/index.ts";
import { makeDeviceCsr } from "../gateway/_device.ts";
import { tempDir } from "./tmp.ts";

/** What a simulated device does with a target it installs. */
export type SimOutcome = "healthy" | "unhealthy" | "start-fails";

/** The part of a harness gateway the fleet needs. */
export interface SimGateway {
  url: string;
  caPem: string;
  adminToken: string;
}

export interface SimFleetOptions {
  /** How many devices to register. */
  count: number;
  /** Tags of the registration token (default ["main"]). */
  tags?: string[];
  /** Hardware id (default "amd64-linux"). */
  hwid?: string;
  /** Requests in flight across the fleet (default 16). */
  concurrency?: number;
  /** Device names are `<prefix>-<i>` (default "sim"). */
  namePrefix?: string;
  /** The target every device runs at the start (as if preloaded), reported in x-ats-target. */
  initialTarget?: string;
  /** Outcome of installing `target` on `device` (default "healthy"). */
  behaviour?: (device: SimDevice, target: Target) => SimOutcome;
  /** Pull the app manifests of a target before installing it (default true; false when the apps are not in the registry). */
  pullManifests?: boolean;
}

export class SimDeviceError extends Error {
  override name = "SimDeviceError";
}

let eventSeq = 0;

/** One simulated device: its identity, its trusted TUF store and the target it runs. */
export class SimDevice {
  /** Name of the running target (sent as x-ats-target). */
  current: string | undefined;
  /**
   * The version of the target it installed, remembered as fioup keeps it in its database: a
   * target the metadata no longer lists (a cancelled rollout hides its version from a member still
   * pending) is still what runs, and nothing older is offered in its place.
   */
  #currentVersion: string | number | undefined;
  /** Names of targets this device saw offered by its verified metadata, ever. */
  readonly seen = new Set<string>();
  /** App manifest digests this device pulled from the registry. */
  readonly pulled: string[] = [];
  /** Last verified targets. */
  lastTargets: VerifiedTargets | undefined;
  /** Refreshes that failed verification and succeeded when tried again (as fioup's next poll would). */
  readonly transientErrors: string[] = [];
  #correlation = 0;

  constructor(
    readonly gw: SimGateway,
    readonly uuid: string,
    readonly name: string,
    readonly hwid: string,
    readonly tags: string[],
    readonly cert: string,
    readonly key: string,
    readonly tufDir: string,
    readonly behaviour: (device: SimDevice, target: Target) => SimOutcome,
    readonly pullsManifests = true,
  ) {}

  /** `fetch` with this device's client certificate, trusting only the gateway CA. */
  fetch(path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(`${this.gw.url}${path}`, { ...init, tls: { ca: this.gw.caPem, cert: this.cert, key: this.key } } as RequestInit);
  }

  #headers(): Record<string, string> {
    return {
      "x-ats-tags": this.tags.join(","),
      ...(this.current ? { "x-ats-target": this.current } : {}),
    };
  }

  /**
   * Refreshes and verifies the TUF chain (tuf-js through lib/tuf, as fioup does) and returns
   * the verified targets; every target name it offers is remembered in `seen`.
   * @throws the lib/tuf verification errors
   */
  async refresh(): Promise<VerifiedTargets> {
    const verified = await verifyAndLoadTargets({
      metadataDir: this.tufDir,
      metadataBaseUrl: `${this.gw.url}/repo/`,
      fetch: { tls: { ca: this.gw.caPem, cert: this.cert, key: this.key } },
      headers: () => this.#headers(),
    });
    for (const n of Object.keys(verified.targets)) this.seen.add(n);
    this.lastTargets = verified;
    return verified;
  }

  /** The target fioup would pick from the last refresh (newest for this hwid and tags, never older than the current one). */
  selected(): Target | undefined {
    if (!this.lastTargets) return undefined;
    const currentVersion = this.#currentVersion ?? (this.current ? this.lastTargets.targets[this.current]?.custom.version : undefined);
    return selectTarget(this.lastTargets.targets, { hwid: this.hwid, tags: this.tags, currentVersion });
  }

  /** Posts a batch of events; throws unless the gateway accepted it. */
  async postEvents(events: DeviceEvent[]): Promise<void> {
    const res = await this.fetch("/events", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(events) });
    if (!res.ok) throw new SimDeviceError(`${this.name}: POST /events answered ${res.status} ${await res.text()}`);
    await res.arrayBuffer();
  }

  /** Posts apps-states (fioup/report.ts); throws unless accepted. */
  async postAppsStates(apps: Record<string, AppState>): Promise<void> {
    const res = await this.fetch("/apps-states", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ deviceTime: new Date().toISOString(), apps }),
    });
    if (!res.ok) throw new SimDeviceError(`${this.name}: POST /apps-states answered ${res.status} ${await res.text()}`);
    await res.arrayBuffer();
  }

  /** GETs every app manifest of `entry` from the gateway's registry with the device certificate (fioup's fetch step, manifests only). */
  async pullManifests(entry: TargetEntry): Promise<void> {
    for (const app of Object.values(entry.custom.docker_compose_apps)) {
      const m = /^[^/]+\/(.+)@(sha256:[0-9a-f]{64})$/.exec(app.uri);
      if (!m) throw new SimDeviceError(`${this.name}: cannot parse app uri ${app.uri}`);
      const res = await this.fetch(`/v2/${m[1]}/manifests/${m[2]}`, {
        headers: { accept: "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json" },
      });
      if (!res.ok) throw new SimDeviceError(`${this.name}: manifest ${app.uri} answered ${res.status}`);
      await res.arrayBuffer();
      this.pulled.push(m[2]!);
    }
  }

  #event(type: EventTypeId, t: Target, correlationId: string, extra: { success?: boolean; details?: unknown } = {}): DeviceEvent {
    return {
      id: `sim-${this.uuid.slice(0, 8)}-${++eventSeq}`,
      deviceTime: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
      eventType: { id: type, version: 2 },
      event: {
        correlationId,
        targetName: t.name,
        version: t.entry.custom.version,
        ...(extra.success !== undefined ? { success: extra.success } : {}),
        ...(extra.details !== undefined ? { details: typeof extra.details === "string" ? extra.details : JSON.stringify(extra.details) } : {}),
      },
    };
  }

  /** Apps-states as fioup reports them for `entry`'s apps: one service each, healthy or unhealthy. */
  appsStatesFor(entry: TargetEntry, healthy: boolean): Record<string, AppState> {
    const out: Record<string, AppState> = {};
    for (const [name, app] of Object.entries(entry.custom.docker_compose_apps)) {
      out[name] = {
        uri: app.uri,
        state: healthy ? "healthy" : "unhealthy",
        services: [{ name: "web", state: "running", status: healthy ? "Up 5 seconds (healthy)" : "Up 5 seconds (unhealthy)", health: healthy ? "healthy" : "unhealthy" }],
      };
    }
    return out;
  }

  /**
   * Installs `t` the way fioup's update plan reports it: init, download (manifest pulls),
   * install, start; then apps-states. "start-fails" rolls back (the current target stays).
   * Returns the outcome.
   */
  async install(t: Target): Promise<SimOutcome> {
    const outcome = this.behaviour(this, t);
    const cid = `${this.uuid.slice(0, 8)}-${++this.#correlation}-${t.entry.custom.version}`;
    await this.postEvents([
      this.#event("UpdateInitStarted", t, cid),
      this.#event("UpdateInitCompleted", t, cid, { success: true }),
      this.#event("EcuDownloadStarted", t, cid),
    ]);
    if (this.pullsManifests) await this.pullManifests(t.entry);
    const applied = [
      this.#event("EcuDownloadCompleted", t, cid, { success: true, details: { bytesFetched: 0 } }),
      this.#event("EcuInstallationStarted", t, cid),
      this.#event("EcuInstallationApplied", t, cid),
    ];
    if (outcome === "start-fails") {
      await this.postEvents([
        ...applied,
        this.#event("EcuInstallationCompleted", t, cid, {
          success: false,
          details: { phase: "start", error: 'service "web" is unhealthy', rolledBackTo: this.current ?? null, rollbackOk: true },
        }),
      ]);
      return outcome;
    }
    await this.postEvents([...applied, this.#event("EcuInstallationCompleted", t, cid, { success: true })]);
    this.current = t.name;
    this.#currentVersion = t.entry.custom.version;
    await this.postAppsStates(this.appsStatesFor(t.entry, outcome === "healthy"));
    return outcome;
  }

  /**
   * `fioup check`: refresh, install nothing. A refresh that fails is tried once more (fioup's
   * next poll) and recorded in `transientErrors`. Returns what fioup would install.
   */
  async check(): Promise<Target | undefined> {
    try {
      await this.refresh();
    } catch (err) {
      // fioup's daemon logs a failed check and tries again at its next poll; a second failure is an error.
      await Bun.sleep(1000);
      await this.refresh();
      this.transientErrors.push((err as Error).message);
    }
    return this.selected();
  }

  /**
   * One daemon cycle: check, and install what the verified metadata offers when it is newer
   * than the running target. Returns the target installed, if any.
   */
  async cycle(): Promise<{ installed?: Target; outcome?: SimOutcome }> {
    const t = await this.check();
    if (!t || t.name === this.current) return {};
    return { installed: t, outcome: await this.install(t) };
  }
}

/** A fleet of simulated devices on one gateway. */
export class SimFleet {
  private constructor(
    readonly devices: SimDevice[],
    readonly concurrency: number,
  ) {}

  /**
   * Creates a registration token for `count` devices (admin API) and registers them with it,
   * `concurrency` at a time, each with its own key and certificate and its own TUF store
   * holding the root.json its registration returned.
   * @throws {SimDeviceError} If a registration is refused.
   */
  static async register(gw: SimGateway, opts: SimFleetOptions): Promise<SimFleet> {
    const tags = opts.tags ?? ["main"];
    const hwid = opts.hwid ?? "amd64-linux";
    const prefix = opts.namePrefix ?? "sim";
    const concurrency = opts.concurrency ?? 16;
    const behaviour = opts.behaviour ?? (() => "healthy" as const);
    const tls = { ca: gw.caPem };
    const tokRes = await fetch(`${gw.url}/admin/tokens`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${gw.adminToken}` },
      body: JSON.stringify({ name: `${prefix} fleet`, maxUses: opts.count, tags }),
      tls,
    } as RequestInit);
    if (!tokRes.ok) throw new SimDeviceError(`Cannot create a registration token: ${tokRes.status} ${await tokRes.text()}`);
    const { token } = (await tokRes.json()) as { token: string };
    const root = await tempDir(`${prefix}-fleet-`);
    const devices: SimDevice[] = new Array(opts.count);
    await pool(opts.count, concurrency, async (i) => {
      const k = await makeDeviceCsr();
      const name = `${prefix}-${i}`;
      let res: Response | undefined;
      // A connection shed under the registration burst is retried, as a rerun of fioup register would be.
      for (let attempt = 1; !res; attempt++) {
        try {
          res = await fetch(`${gw.url}/devices`, {
            method: "POST",
            headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
            body: JSON.stringify({ name, uuid: k.uuid, csr: k.csrPem, "hardware-id": hwid }),
            tls,
          } as RequestInit);
        } catch (err) {
          if (attempt >= 5) throw err;
          await Bun.sleep(100 * attempt);
        }
      }
      if (res.status !== 201) throw new SimDeviceError(`Cannot register ${name}: ${res.status} ${await res.text()}`);
      const body = (await res.json()) as RegistrationResponse;
      const tufDir = join(root, k.uuid);
      mkdirSync(tufDir, { recursive: true });
      writeFileSync(join(tufDir, "root.json"), JSON.stringify(body.root));
      const d = new SimDevice(gw, k.uuid, name, hwid, tags, body.certificate, k.keyPem, tufDir, behaviour, opts.pullManifests ?? true);
      d.current = opts.initialTarget;
      devices[i] = d;
    });
    return new SimFleet(devices, concurrency);
  }

  /** Runs `fn` on every device (or `subset`), `concurrency` at a time; the first error is thrown after all finished. */
  async each<T>(fn: (d: SimDevice) => Promise<T>, subset: SimDevice[] = this.devices): Promise<T[]> {
    const out: T[] = new Array(subset.length);
    let first: unknown;
    await pool(subset.length, this.concurrency, async (i) => {
      try {
        out[i] = await fn(subset[i]!);
      } catch (err) {
        first ??= err;
      }
    });
    if (first !== undefined) throw first;
    return out;
  }

  /** One daemon cycle on every device (or `subset`): refresh, then install what is offered. */
  cycle(subset?: SimDevice[]) {
    return this.each((d) => d.cycle(), subset);
  }

  /** Every device's transient refresh errors, as `name: message`. */
  transientErrors(): string[] {
    return this.devices.flatMap((d) => d.transientErrors.map((m) => `${d.name}: ${m}`));
  }

  byUuid(uuid: string): SimDevice | undefined {
    return this.devices.find((d) => d.uuid === uuid);
  }
}

async function pool(n: number, width: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, n) }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}
