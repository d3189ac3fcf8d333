/**
 * The update state machine with its real store, DB and steps; the container
 * runtime is a recording stand-in (the e2e tests in test/fioup use dockerd).
 * Blobs are placed in the store beforehand, so no registry is needed.
 */
import { afterAll, beforeEach, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Target } from "../../lib/api/index.ts";
import { createBundle } from "../../lib/compose/bundle.ts";
import { APP_ARTIFACT_TYPE, BUNDLE_INDEX_DIGEST_ANNOTATION, BUNDLE_INDEX_SIZE_ANNOTATION, EMPTY_CONFIG_DESCRIPTOR } from "../../lib/compose/app-format.ts";
import { digestBytes } from "../../lib/oci/digest.ts";
import { resolveConfig } from "../config.ts";
import { DeviceDb } from "../db.ts";
import { DeviceBlobStore } from "../../lib/device/store.ts";
import { NoUpdateInProgressError, createUpdate } from "./check-step.ts";
import { cancelUpdate } from "./cancel.ts";
import type { AppRuntime, UpdateContext } from "./context.ts";
import { InstallFailedError } from "./install-step.ts";
import { plans } from "./plans.ts";
import { StartFailedError } from "./start-step.ts";
import { InvalidStateError } from "./states.ts";
import { NoSpaceError } from "./space.ts";
import { runSteps } from "./step.ts";
import type { StartResult } from "../runtime/index.ts";

const dir = mkdtempSync(join(tmpdir(), "fioup-engine-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const REG = "127.0.0.1:9";
const enc = (s: string) => new TextEncoder().encode(s);

/** Puts an app (one service, one layer) into the store; returns its URI. */
async function storeApp(store: DeviceBlobStore, name: string, layerText: string): Promise<string> {
  const layer = enc(layerText);
  const config = enc(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [digestBytes(layer)] } }));
  const manifest = enc(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: digestBytes(config), size: config.length },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: digestBytes(layer), size: layer.length }],
    }),
  );
  for (const b of [layer, config, manifest]) store.putBytes(digestBytes(b), b);
  const appDir = join(dir, `src-${name}-${digestBytes(layer).slice(7, 15)}`);
  mkdirSync(appDir, { recursive: true });
  const compose = `services:\n  web:\n    image: ${REG}/main/${name}@${digestBytes(manifest)}\n`;
  writeFileSync(join(appDir, "docker-compose.yml"), compose);
  const bundle = await createBundle(appDir, { composeFileName: "docker-compose.yml", composeText: compose, outFile: join(appDir, "..", `${name}.tgz`) });
  store.putBytes(bundle.digest, new Uint8Array(await Bun.file(bundle.path).arrayBuffer()));
  store.putBytes(bundle.indexDigest, bundle.indexBytes);
  const appManifest = enc(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      artifactType: APP_ARTIFACT_TYPE,
      config: EMPTY_CONFIG_DESCRIPTOR,
      layers: [
        {
          mediaType: "application/octet-stream",
          digest: bundle.digest,
          size: bundle.size,
          annotations: { [BUNDLE_INDEX_DIGEST_ANNOTATION]: bundle.indexDigest, [BUNDLE_INDEX_SIZE_ANNOTATION]: String(bundle.indexBytes.length) },
        },
      ],
      annotations: { "compose-app": "v1" },
    }),
  );
  store.putBytes(digestBytes(appManifest), appManifest);
  return `${REG}/main/${name}@${digestBytes(appManifest)}`;
}

const target = (version: string, apps: Record<string, string>): Target => ({
  name: `hw-${version}`,
  entry: {
    length: 0,
    hashes: {},
    custom: { version, hardwareIds: ["hw"], tags: ["main"], docker_compose_apps: Object.fromEntries(Object.entries(apps).map(([n, uri]) => [n, { uri }])) },
  },
});

class FakeRuntime implements AppRuntime {
  installed = new Map<string, string>();
  staged = new Map<string, string>();
  running = new Set<string>();
  calls: string[] = [];
  failStart = new Set<string>();
  onInstall?: (name: string) => void;
  async installApp(app: { name: string; uri: string }) {
    await this.stageApp(app);
    await this.swapApp(app.name);
    return { name: app.name, uri: app.uri, dir: "", composeFile: "docker-compose.yml", images: [] };
  }
  async stageApp(app: { name: string; uri: string }) {
    this.calls.push(`install ${app.name}`);
    this.onInstall?.(app.name);
    this.staged.set(app.name, app.uri);
    return { name: app.name, uri: app.uri, dir: "", composeFile: "docker-compose.yml", images: [] };
  }
  async swapApp(name: string) {
    const uri = this.staged.get(name);
    if (uri === undefined) return false;
    if (this.running.has(name)) throw new Error(`swap of running app ${name}`);
    this.installed.set(name, uri);
    this.staged.delete(name);
    return true;
  }
  async dataRoot() {
    return dir;
  }
  async discardStaged(names: string[]) {
    for (const n of names) this.staged.delete(n);
  }
  async startApps(names: string[]): Promise<StartResult[]> {
    this.calls.push(`start ${names.join(",")}`);
    return names.map((name) => {
      const ok = !this.failStart.has(this.installed.get(name) ?? "");
      if (ok) this.running.add(name);
      return { name, ok, state: { uri: "", state: ok ? ("healthy" as const) : ("unhealthy" as const), services: [] }, ...(ok ? {} : { error: "exited (1)" }) };
    });
  }
  async stopApps(names: string[]) {
    this.calls.push(`stop ${names.join(",")}`);
    for (const n of names) this.running.delete(n);
    return names.map((name) => ({ name, ms: 0 }));
  }
  async removeApp(name: string) {
    this.calls.push(`remove ${name}`);
    this.installed.delete(name);
    this.running.delete(name);
  }
  async appsState() {
    return {};
  }
  async pruneImages() {
    return [];
  }
  async installedApps() {
    return [...this.installed].map(([name, uri]) => ({ name, uri, dir: "", composeFile: "docker-compose.yml", images: [] }));
  }
  async isInstalled(app: { name: string; uri: string }) {
    return this.installed.get(app.name) === app.uri;
  }
}

let n = 0;
let ctx: UpdateContext;
let rt: FakeRuntime;
let store: DeviceBlobStore;
beforeEach(() => {
  const root = join(dir, `dev${n++}`);
  const cfg = resolveConfig({ provision: { primary_ecu_hardware_id: "hw" } }, { root, sotaDir: join(root, "var/sota") });
  mkdirSync(cfg.storagePath, { recursive: true });
  rt = new FakeRuntime();
  store = new DeviceBlobStore(cfg.resetAppsRoot);
  ctx = {
    cfg,
    db: new DeviceDb(join(cfg.storagePath, "fioup.db")),
    runtime: rt,
    hooks: {},
    registry: () => {
      throw new Error("no registry in this test: every blob is in the store");
    },
  };
});

const eventTypes = () => ctx.db.peekEvents(1000).map((e) => e.event.eventType.id + (e.event.event.success === false ? ":fail" : ""));

async function updateTo(t: Target): Promise<void> {
  ctx.updateId = createUpdate(ctx, t, false);
  await runSteps(plans.resume(), ctx);
}

describe("update engine", () => {
  test("an update runs every step, sends the events in the documented order and makes the target current", async () => {
    const uri = await storeApp(store, "app", "v1");
    await updateTo(target("1", { app: uri }));
    const u = ctx.db.lastUpdate()!;
    expect(u.state).toBe("completed");
    expect(u.steps.map((s) => s.step)).toEqual(["init", "fetch", "stop", "install", "start", "complete"]);
    expect(ctx.db.currentTarget()?.name).toBe("hw-1");
    expect(rt.running.has("app")).toBe(true);
    expect(eventTypes()).toEqual([
      "MetadataUpdateCompleted",
      "UpdateInitStarted",
      "UpdateInitCompleted",
      "EcuDownloadStarted",
      "EcuDownloadCompleted",
      "EcuInstallationStarted",
      "EcuInstallationApplied",
      "EcuInstallationCompleted",
    ]);
    expect(new Set(ctx.db.peekEvents(1000).map((e) => e.event.event.correlationId))).toEqual(new Set([u.id]));
  });

  test("an update stages, stops and starts only the app whose URI changed; the same apps again touch nothing", async () => {
    const a1 = await storeApp(store, "a", "a1");
    const b1 = await storeApp(store, "b", "b1");
    await updateTo(target("1", { a: a1, b: b1 }));
    const b2 = await storeApp(store, "b", "b2");
    rt.calls = [];
    await updateTo(target("2", { a: a1, b: b2 }));
    expect(rt.calls).toEqual(["install b", "stop b", "start b"]);
    expect(rt.running).toEqual(new Set(["a", "b"]));
    rt.calls = [];
    await updateTo(target("3", { a: a1, b: b2 }));
    expect(rt.calls).toEqual([]);
    expect(ctx.db.currentTarget()?.name).toBe("hw-3");
  });

  test("a first install says nothing about stopping; an update says which installed apps it stops", async () => {
    const info: string[] = [];
    ctx.hooks = { onInfo: (l) => info.push(l) };
    const a1 = await storeApp(store, "a", "a1");
    await updateTo(target("1", { a: a1 }));
    expect(info.filter((l) => l.startsWith("Stop"))).toEqual([]);
    expect(rt.calls).toContain("stop a"); // stopped all the same: a killed run may have left containers
    const a2 = await storeApp(store, "a", "a2");
    const b1 = await storeApp(store, "b", "b1");
    info.length = 0;
    await updateTo(target("2", { a: a2, b: b1 }));
    expect(info.filter((l) => l.startsWith("Stop"))).toEqual(["Stopping a", "Stopped a: nothing was running"]);
  });

  test("a no-space refusal fails the update with the download events still in the documented order", async () => {
    const uri = await storeApp(store, "app", "big");
    rmSync(store.path(digestBytes(enc("big"))));
    ctx.cfg = { ...ctx.cfg, storageWatermark: 1 };
    await expect(updateTo(target("1", { app: uri }))).rejects.toThrow(NoSpaceError);
    expect(ctx.db.lastUpdate()!.state).toBe("failed");
    expect(eventTypes()).toEqual(["MetadataUpdateCompleted", "UpdateInitStarted", "UpdateInitCompleted", "EcuDownloadStarted", "EcuDownloadCompleted:fail"]);
  });

  test("a run killed during install resumes on the next run without repeating finished steps", async () => {
    const uri = await storeApp(store, "app", "v1");
    const ac = new AbortController();
    rt.onInstall = () => {
      ac.abort(new Error("killed"));
      throw new Error("killed");
    };
    ctx.signal = ac.signal;
    ctx.updateId = createUpdate(ctx, target("1", { app: uri }), false);
    await expect(runSteps(plans.resume(), ctx)).rejects.toThrow("killed");
    expect(ctx.db.pendingUpdate()?.state).toBe("installing");
    rt.onInstall = undefined;
    ctx.signal = undefined;
    ctx.updateId = undefined;
    await runSteps(plans.resume(), ctx);
    expect(ctx.db.lastUpdate()!.state).toBe("completed");
    expect(eventTypes().filter((t) => t === "EcuInstallationStarted")).toHaveLength(1);
    expect(eventTypes().filter((t) => t === "EcuDownloadStarted")).toHaveLength(1);
  });

  test("a target whose app does not start is rolled back at once, marked bad and reported failed", async () => {
    const v1 = await storeApp(store, "app", "v1");
    await updateTo(target("1", { app: v1 }));
    const v2 = await storeApp(store, "app", "v2");
    rt.failStart.add(v2);
    rt.calls = [];
    await expect(updateTo(target("2", { app: v2 }))).rejects.toThrow(StartFailedError);
    expect(ctx.db.lastUpdate()!.state).toBe("failed");
    expect(ctx.db.badTargets()).toEqual(["hw-2"]);
    expect(ctx.db.currentTarget()?.name).toBe("hw-1");
    expect(rt.installed.get("app")).toBe(v1);
    expect(rt.running.has("app")).toBe(true);
    // Staged while v1 ran, stopped only to swap; the rollback stops v2 and puts v1 back.
    expect(rt.calls).toEqual(["install app", "stop app", "start app", "stop app", "install app", "start app"]);
    expect(eventTypes().at(-1)).toBe("EcuInstallationCompleted:fail");
  });

  test("an install failure while staging fails the update without stopping anything", async () => {
    const v1 = await storeApp(store, "app", "v1");
    await updateTo(target("1", { app: v1 }));
    const other = await storeApp(store, "other", "o1");
    rt.onInstall = (name) => {
      if (name === "other") throw new Error("image ID mismatch");
    };
    rt.calls = [];
    await expect(updateTo(target("2", { app: v1, other }))).rejects.toThrow(InstallFailedError);
    rt.onInstall = undefined;
    expect([...rt.installed.keys()]).toEqual(["app"]);
    // Staging failed before anything was stopped: the running app was never touched.
    expect(rt.calls).toEqual(["install other"]);
    expect(rt.running.has("app")).toBe(true);
    expect(ctx.db.badTargets()).toEqual(["hw-2"]);
  });

  test("complete removes apps no longer wanted and prunes blobs nothing references", async () => {
    const a = await storeApp(store, "app", "v1");
    const b = await storeApp(store, "gone", "g1");
    await updateTo(target("1", { app: a, gone: b }));
    const a2 = await storeApp(store, "app", "v2");
    const oldLayer = digestBytes(enc("g1"));
    expect(store.has(oldLayer)).toBe(true);
    await updateTo(target("2", { app: a2 }));
    expect([...rt.installed.keys()]).toEqual(["app"]);
    expect(store.has(oldLayer)).toBe(false);
    expect(store.has(digestBytes(enc("v2")))).toBe(true);
  });

  test("the shortlist decides which apps are installed", async () => {
    ctx.cfg.shortlist = ["b"];
    const a = await storeApp(store, "a", "a1");
    const b = await storeApp(store, "b", "b1");
    await updateTo(target("1", { a, b }));
    expect([...rt.installed.keys()]).toEqual(["b"]);
  });

  test("cancel undoes an installed update and is refused once the apps started", async () => {
    const v1 = await storeApp(store, "app", "v1");
    await updateTo(target("1", { app: v1 }));
    const v2 = await storeApp(store, "app", "v2");
    ctx.updateId = createUpdate(ctx, target("2", { app: v2 }), false);
    await runSteps(plans.resume().slice(0, 5), ctx); // through install (after the hold gate)
    expect(rt.installed.get("app")).toBe(v2);
    const c = await cancelUpdate(ctx);
    expect(c.state).toBe("canceled");
    expect(rt.installed.get("app")).toBe(v1);
    expect(rt.running.has("app")).toBe(true);
    await expect(cancelUpdate(ctx)).rejects.toThrow(NoUpdateInProgressError);
    expect(ctx.db.badTargets()).toEqual([]);

    ctx.updateId = createUpdate(ctx, target("3", { app: v2 }), false);
    await runSteps(plans.resume().slice(0, 5), ctx);
    ctx.db.setState(ctx.updateId, "starting");
    await expect(cancelUpdate(ctx)).rejects.toThrow(InvalidStateError);
  });

  test("install and start refuse to run out of order", async () => {
    await expect(runSteps(plans.install(), ctx)).rejects.toThrow(NoUpdateInProgressError);
    const v1 = await storeApp(store, "app", "v1");
    ctx.updateId = createUpdate(ctx, target("1", { app: v1 }), false);
    await expect(runSteps(plans.start(), ctx)).rejects.toThrow(InvalidStateError);
  });
});
