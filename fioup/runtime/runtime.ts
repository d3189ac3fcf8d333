/**
 * The device runtime: everything fioup (and preload's early start) does to the
 * Docker Engine and to the app files on disk, behind one small class so the
 * update steps never talk to dockerd or `docker compose` directly.
 *
 * Contract with the caller: every blob an app references must already be in
 * the content-addressed store (`<storeRoot>/blobs/sha256/<hex>`): the app
 * manifest (digest from the app URI), its bundle tgz and bundle index, and for
 * every service image its manifest (and the index when the compose file pins
 * one), config and layers. Install then works offline.
 *
 * @module
 */
import { mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { AppState } from "../../lib/api/device.ts";
import { isAppName } from "../../lib/api/target.ts";
import { syncDir, writeFileAtomic } from "../../lib/fs/atomic-write.ts";
import {
  BUNDLE_INDEX_DIGEST_ANNOTATION,
  COMPOSE_FILE_NAMES,
  MAX_BUNDLE_INDEX_BYTES,
  type BundleIndex,
} from "../../lib/compose/app-format.ts";
import { parseCompose } from "../../lib/compose/compose-file.ts";
import { extractBundle } from "../../lib/compose/extract.ts";
import { parseReference } from "../../lib/oci/reference.ts";
import { blobPath, BlobNotInStoreError, CorruptBlobError, readJsonBlob, readSmallBlob } from "./_store.ts";
import { composeFacts, enabledProfiles, startWaves, type ComposeFacts } from "./_compose-facts.ts";
import { Compose, composeEnv, composeMajor, dotEnvAsV1, findCompose, killLeftoverCompose, OVERRIDE_FILE, projectName } from "./compose.ts";
import { DockerEngine, EngineError } from "./docker-engine.ts";
import { appState, serviceReports, waitForApp, type ServiceSpec } from "./health.ts";
import { layersToLoad, loadImageFromStore, UnpinnedImageError, type LayerLoad } from "./images.ts";

export type { AppState, ServiceState } from "../../lib/api/device.ts";

export interface RuntimeConfig {
  /** `pacman.compose_apps_root`: apps are extracted to `<composeAppsRoot>/<app>/`. */
  composeAppsRoot: string;
  /** `pacman.reset_apps_root`: the blob store (`blobs/sha256/<hex>`). */
  storeRoot: string;
  /** `unix:///path/docker.sock`; default: `$DOCKER_HOST`, else `unix:///var/run/docker.sock`. */
  dockerHost?: string;
  /** Force the compose command (e.g. `["docker-compose"]`); default: `docker compose`, else `docker-compose`. */
  composeCommand?: string[];
  /** Platform to pick from an image index; default: linux + this process's architecture. */
  platform?: { os: string; architecture: string; variant?: string };
}

/** An app of a target, as in `custom.docker_compose_apps`. */
export interface AppRef {
  name: string;
  /** `<registry>/<repo>/<app>@sha256:<app manifest digest>` */
  uri: string;
}

/** One service image of an installed app. */
export interface InstalledImage {
  service: string;
  /** The pinned reference as written in the compose file (`repo@sha256:...`). */
  ref: string;
  /** The local tag the override points at: `<repository>:fioup-<32 hex of the manifest digest>`. */
  tag: string;
  /** Engine image ID = the image's config digest. */
  imageId: string;
}

/** What `.fioup/app.json` records for an installed app. */
export interface InstalledApp {
  name: string;
  uri: string;
  /** Path of the app directory. */
  dir: string;
  /** Compose file name inside `dir` (as in the bundle). */
  composeFile: string;
  images: InstalledImage[];
}

export interface StartResult {
  name: string;
  /** Every service running (healthy where it has a healthcheck, or exited 0) within the timeout. */
  ok: boolean;
  state: AppState;
  /** Why it failed, for the event's details. */
  error?: string;
  /**
   * The app's own containers failed (exited, unhealthy, restarting, or not up in time), as opposed
   * to the engine or compose failing to create them. Its error may quote the app's output, which
   * says nothing about the device: a failure of the app is the target's.
   */
  appFailed?: boolean;
}

/** How stopping one app went: its time, and the service that took longest. */
export interface StopResult {
  name: string;
  ms: number;
  slowest?: {
    service: string;
    ms: number;
    /** It did not stop on its stop signal and was killed when its grace period ran out. */
    killed: boolean;
    graceSeconds?: number;
  };
}

export interface InstallOptions {
  signal?: AbortSignal;
  /** Progress lines for humans (the caller decides where they go). */
  onProgress?: (line: string) => void;
  /**
   * Told what the engine will load for the app before it loads any of it (called only when it
   * lacks an image): a throw stops the staging there, the running app untouched.
   */
  beforeLoad?: (layers: LayerLoad[]) => Promise<void>;
}

/** The app URI is malformed, or its last path part is not the app's name. */
/** What a container of another app set aside for a `container_name` is renamed to: `<name>` + this + its short ID. */
const ASIDE = "_fioup-aside-";

export class InvalidAppUriError extends Error {
  override name = "InvalidAppUriError";
  constructor(app: string, uri: string, why: string) {
    super(`Cannot install app "${app}" from "${uri.slice(0, 300)}": ${why}`);
  }
}

/** The app manifest in the store is not a compose-app manifest (no bundle layer or index annotation). */
export class InvalidAppManifestError extends Error {
  override name = "InvalidAppManifestError";
}

/** The bundle's compose file names an image that is missing or not pinned. */
export class InvalidAppComposeError extends Error {
  override name = "InvalidAppComposeError";
}

const META_FILE = ".fioup/app.json";
/** Beside the apps: every local tag this runtime created, so pruning removes only its own. */
const LEDGER_FILE = ".fioup-images.json";
/** Beside the apps: compose commands running now (killed by the next fioup if this one dies). */
const COMPOSE_PID_FILE = ".fioup-compose.pids";
/** Dangling images younger than this are left to the next prune (see pruneImages); tests that prune the shared engine use it too. */
export const DANGLING_GRACE = "10m";

/** Ties engine, images, compose, extraction and health together. */
export class Runtime {
  readonly engine: DockerEngine;
  private compose?: Promise<Compose>;
  private found?: Promise<string[]>;
  private ledgerQueue: Promise<unknown> = Promise.resolve();
  /** Each installed app's compose facts, by app name (see {@link facts}). */
  private readonly factsCache = new Map<string, { key: string; facts: ComposeFacts }>();
  /** How many times a compose file was parsed for its facts (tests read it). */
  composeParses = 0;

  constructor(readonly config: RuntimeConfig) {
    this.engine = new DockerEngine(config.dockerHost);
  }

  /** Which compose command runs the apps, found once (a failed search is retried next time: compose may get installed). */
  private composeCommand(): Promise<string[]> {
    if (this.config.composeCommand) return Promise.resolve(this.config.composeCommand);
    this.found ??= findCompose();
    this.found.catch(() => (this.found = undefined));
    return this.found;
  }

  /**
   * The compose CLI, to run apps with: the first use also kills what a killed fioup left running,
   * which only a run that starts or stops apps may do, not a read (facts, app states).
   */
  private composeCli(): Promise<Compose> {
    this.compose ??= (async () => {
      const cmd = await this.composeCommand();
      const pidFile = join(this.config.composeAppsRoot, COMPOSE_PID_FILE);
      killLeftoverCompose(pidFile);
      await mkdir(this.config.composeAppsRoot, { recursive: true });
      return new Compose(cmd, this.engine.host, pidFile);
    })();
    // A failed detection is retried next time (compose may get installed).
    this.compose.catch(() => (this.compose = undefined));
    return this.compose;
  }

  private appDir(name: string): string {
    if (!isAppName(name)) throw new InvalidAppUriError(name, "", "not a valid app name");
    return join(this.config.composeAppsRoot, name);
  }

  /** Where the engine keeps image layers (`docker info` DockerRootDir). @throws {EngineError} */
  async dataRoot(): Promise<string> {
    return (await this.engine.info()).DockerRootDir;
  }

  /** Checks the engine answers; returns its version (e.g. "20.10.24"). @throws {EngineError} */
  async ping(): Promise<string> {
    return (await this.engine.version()).Version;
  }

  /**
   * Installs one app from the store: {@link stageApp} then {@link swapApp}.
   * The app is not started; an app of the same name is replaced (stop it first).
   * @throws {InvalidAppUriError | InvalidAppManifestError | InvalidAppComposeError | BlobNotInStoreError | CorruptBlobError | ImageLoadError | ImageIdMismatchError | UnsafeBundleError | BundleIndexMismatchError | EngineError}
   */
  async installApp(app: AppRef, opts: InstallOptions = {}): Promise<InstalledApp> {
    const staged = await this.stageApp(app, opts);
    await this.swapApp(app.name);
    return staged;
  }

  /** Where an app is staged before the swap: a hidden sibling of its dir. */
  private stagedDir(name: string): string {
    return join(this.config.composeAppsRoot, `.${name}.staged`);
  }

  /**
   * Prepares one app from the store without touching the running one: loads
   * and tags its images (verifying each image ID equals the pinned config
   * digest), extracts the bundle (checked against the bundle index) into a
   * staging dir beside the app's dir, and writes `.fioup/images.yml` and
   * `.fioup/app.json` there. Idempotent: an app already staged from this URI
   * is kept. {@link swapApp} then puts it in place.
   * @throws {InvalidAppUriError | InvalidAppManifestError | InvalidAppComposeError | BlobNotInStoreError | CorruptBlobError | ImageLoadError | ImageIdMismatchError | UnsafeBundleError | BundleIndexMismatchError | EngineError}
   */
  async stageApp(app: AppRef, opts: InstallOptions = {}): Promise<InstalledApp> {
    const finalDir = this.appDir(app.name);
    const dest = this.stagedDir(app.name);
    const already = await this.readMeta(dest, app.name);
    if (already?.uri === app.uri && (await this.imagesPresent(already))) return { ...already, dir: finalDir };
    let ref;
    try {
      ref = parseReference(app.uri);
    } catch (err) {
      throw new InvalidAppUriError(app.name, app.uri, (err as Error).message);
    }
    if (!ref.digest) throw new InvalidAppUriError(app.name, app.uri, "not pinned by digest");
    const last = ref.repository.split("/").pop();
    if (last !== app.name) throw new InvalidAppUriError(app.name, app.uri, `its last path part "${last}" is not the app name`);

    const store = this.config.storeRoot;
    const manifest = await readJsonBlob<{ layers?: { digest?: string; annotations?: Record<string, string> }[] }>(store, ref.digest, `manifest of app "${app.name}"`);
    const layer = manifest.layers?.[0];
    const indexDigest = layer?.annotations?.[BUNDLE_INDEX_DIGEST_ANNOTATION];
    if (!layer?.digest || !indexDigest) {
      throw new InvalidAppManifestError(`Cannot install app "${app.name}": manifest ${ref.digest} has no bundle layer with a bundle index annotation`);
    }
    let index: BundleIndex;
    try {
      index = JSON.parse(new TextDecoder().decode(await readSmallBlob(store, indexDigest, `bundle index of app "${app.name}"`, MAX_BUNDLE_INDEX_BYTES)));
    } catch (err) {
      if (err instanceof BlobNotInStoreError || err instanceof CorruptBlobError) throw err;
      throw new InvalidAppManifestError(`Cannot install app "${app.name}": bundle index ${indexDigest} is unreadable: ${(err as Error).message}`);
    }
    const bundle = blobPath(store, layer.digest);
    if (!(await Bun.file(bundle).exists())) throw new BlobNotInStoreError(layer.digest, `bundle of app "${app.name}"`);

    let installed: InstalledApp | undefined;
    opts.onProgress?.(`Staging app ${app.name}`);
    await extractBundle({
      bundle,
      index,
      dest,
      beforeCommit: async (dir) => {
        const composeFile = COMPOSE_FILE_NAMES.find((n) => n in index);
        if (!composeFile) throw new InvalidAppComposeError(`Cannot install app "${app.name}": the bundle has no compose file`);
        let compose;
        try {
          compose = parseCompose(await readFile(join(dir, composeFile)), `${app.name}/${composeFile}`);
        } catch (err) {
          throw new InvalidAppComposeError(`Cannot install app "${app.name}": ${(err as Error).message}`);
        }
        const images: InstalledImage[] = [];
        for (const svc of compose.services) {
          if (!svc.image) throw new InvalidAppComposeError(`Cannot install app "${app.name}": service "${svc.name}" has no image`);
          if (!svc.image.includes("@")) throw new UnpinnedImageError(svc.image);
        }
        if (opts.beforeLoad) {
          const layers = await layersToLoad(this.engine, store, compose.services.map((svc) => svc.image!), await this.heldLayers(), this.config.platform);
          if (layers.length) await opts.beforeLoad(layers);
        }
        for (const svc of compose.services) {
          if (!svc.image) continue; // refused above
          const loaded = await loadImageFromStore(this.engine, store, svc.image, {
            ...(this.config.platform ? { platform: this.config.platform } : {}),
            ...(opts.signal ? { signal: opts.signal } : {}),
          });
          opts.onProgress?.(loaded.loaded ? `Loaded image ${svc.image} as ${loaded.tag}` : `Image ${svc.image} already loaded as ${loaded.tag}`);
          images.push({ service: svc.name, ref: svc.image, tag: loaded.tag, imageId: loaded.imageId });
        }
        await this.updateLedger(async (ledger) => {
          for (const i of images) ledger.add(i.tag);
        });
        // The override must carry the same `version:` as the main file for compose v1.
        const version = compose.doc.get("version");
        const override = {
          ...(typeof version === "string" || typeof version === "number" ? { version: String(version) } : {}),
          services: Object.fromEntries(images.map((i) => [i.service, { image: i.tag }])),
        };
        await mkdir(join(dir, ".fioup"), { recursive: true });
        await writeFile(join(dir, OVERRIDE_FILE), `# Written by fioup: runs each service from its image loaded from the store.\n${JSON.stringify(override, null, 2)}\n`);
        installed = { name: app.name, uri: app.uri, dir: finalDir, composeFile, images };
        const meta = { ...installed, indexDigest, bundleDigest: layer.digest } as Record<string, unknown>;
        delete meta.dir;
        await writeFile(join(dir, META_FILE), `${JSON.stringify(meta, null, 2)}\n`);
      },
    });
    return installed!;
  }

  /**
   * Puts the staged dir of `name` in place of the installed one (rename aside,
   * rename in, delete the old). Returns false when nothing is staged (already
   * swapped by an earlier run). The app must be stopped: its bind mounts
   * point into the old dir.
   */
  async swapApp(name: string): Promise<boolean> {
    const dest = this.appDir(name);
    const staged = this.stagedDir(name);
    if (!(await this.readMeta(staged, name))) return false;
    const old = join(this.config.composeAppsRoot, `.${name}.old`);
    await rm(old, { recursive: true, force: true });
    try {
      await rename(dest, old);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    // A crash here leaves no dir under the name but the staged one: the next swap finishes.
    this.factsCache.delete(name);
    await rename(staged, dest);
    // On disk before the install step records the swap (the staged tree itself was synced when extracted).
    await syncDir(this.config.composeAppsRoot);
    await rm(old, { recursive: true, force: true });
    return true;
  }

  /** Deletes the staged dirs of `names` (after a failed or canceled update). */
  async discardStaged(names: string[]): Promise<void> {
    for (const n of names) if (isAppName(n)) await rm(this.stagedDir(n), { recursive: true, force: true });
  }

  private async readMeta(dir: string, name: string): Promise<InstalledApp | undefined> {
    let meta: Omit<InstalledApp, "dir">;
    try {
      meta = JSON.parse(await readFile(join(dir, META_FILE), "utf8"));
    } catch {
      return undefined;
    }
    if (!meta || meta.name !== name || typeof meta.uri !== "string" || !Array.isArray(meta.images)) return undefined;
    return { name, uri: meta.uri, dir, composeFile: meta.composeFile, images: meta.images };
  }

  /** The layers (diff_ids) of the installed apps' images the engine holds: loading them again unpacks nothing. */
  private async heldLayers(): Promise<Set<string>> {
    const held = new Set<string>();
    for (const inst of await this.installedApps()) {
      for (const img of inst.images) for (const l of (await this.engine.inspectImage(img.imageId))?.RootFS?.Layers ?? []) held.add(l);
    }
    return held;
  }

  private async imagesPresent(inst: InstalledApp): Promise<boolean> {
    for (const img of inst.images) {
      if ((await this.engine.inspectImage(img.tag))?.Id !== img.imageId) return false;
    }
    return true;
  }

  /** Reads `.fioup/app.json` of an app, or undefined when it is not installed. */
  private async readInstalled(name: string): Promise<InstalledApp | undefined> {
    return await this.readMeta(this.appDir(name), name);
  }

  /** True when `<name>` is installed from exactly this URI and all its tagged images are in the engine. */
  async isInstalled(app: AppRef): Promise<boolean> {
    if (!isAppName(app.name)) return false;
    const inst = await this.readInstalled(app.name);
    if (!inst || inst.uri !== app.uri) return false;
    if (!(await Bun.file(join(inst.dir, inst.composeFile)).exists())) return false;
    return await this.imagesPresent(inst);
  }

  /** The apps under composeAppsRoot that have a `.fioup/app.json`, by name. */
  async installedApps(): Promise<InstalledApp[]> {
    let names: string[];
    try {
      names = (await Array.fromAsync(new Bun.Glob("*").scan({ cwd: this.config.composeAppsRoot, onlyFiles: false, dot: false }))).sort();
    } catch {
      return [];
    }
    const out: InstalledApp[] = [];
    for (const n of names) {
      if (!isAppName(n)) continue;
      const inst = await this.readInstalled(n);
      if (inst) out.push(inst);
    }
    return out;
  }

  /** The services whose containers make the app's state: those `compose up` starts (not those behind a profile it does not enable). */
  private services(inst: InstalledApp, facts: ComposeFacts): ServiceSpec[] {
    return inst.images.filter((i) => !facts.notStarted.has(i.service)).map((i) => ({ name: i.service, image: i.ref }));
  }

  /**
   * The facts the runtime needs from an installed app's compose file (empty when unreadable),
   * with the profiles its `.env` enables, read as compose reads it (same file, same environment),
   * parsed once per installed file: the daemon reports app states every poll. Kept under the
   * app's URI and the inode, mtime and size of both files, so files swapped in by an install (or
   * changed in place) are parsed again; an install or removal also drops it.
   */
  private async facts(inst: InstalledApp): Promise<ComposeFacts> {
    const path = join(inst.dir, inst.composeFile);
    const dotEnvPath = join(inst.dir, ".env");
    const [st, envSt] = await Promise.all([stat(path).catch(() => undefined), stat(dotEnvPath).catch(() => undefined)]);
    const key = st && `${inst.uri} ${inst.dir} ${st.ino} ${st.mtimeMs} ${st.size} ${envSt ? `${envSt.ino} ${envSt.mtimeMs} ${envSt.size}` : "-"}`;
    const cached = this.factsCache.get(inst.name);
    if (key && cached?.key === key) return cached.facts;
    let facts: ComposeFacts;
    // Kept only when known for the compose that runs the app: with a .env, v1 reads COMPOSE_PROFILES
    // more literally (_compose-facts.ts), and without a compose found yet, or one that does not say
    // its version, which one is not known: read meanwhile as v2 (what devices in the field run), but
    // as v1 for a `docker-compose` that gave no answer (dotEnvAsV1), and asked again next time.
    let known = true;
    try {
      this.composeParses++;
      const c = parseCompose(await readFile(path), `${inst.name}/${inst.composeFile}`);
      const dotEnv = await readFile(dotEnvPath, "utf8").catch(() => undefined);
      const cmd = dotEnv === undefined ? undefined : await this.composeCommand().catch(() => undefined);
      const major = cmd === undefined ? undefined : await composeMajor(cmd);
      known = dotEnv === undefined || major !== undefined;
      facts = composeFacts(c.doc, projectName(inst.name), enabledProfiles(dotEnv, `${inst.name}/.env`, composeEnv(this.engine.host), cmd !== undefined && dotEnvAsV1(cmd, major)));
    } catch {
      facts = { stopGrace: new Map(), creates: new Set(), needs: new Set(), notStarted: new Set(), containerNames: new Set() };
    }
    if (key && known) this.factsCache.set(inst.name, { key, facts });
    return facts;
  }

  /**
   * `compose up -d --remove-orphans` for each app, then waits until each app's
   * services run (or are healthy / exited 0) or fail, at most `timeoutMs` per
   * app (default 120 s). Apps start at once, except that an app needing an
   * external network or volume that another app creates waits for that app.
   * Never throws for an app that fails to start (not installed, compose error,
   * unhealthy): that is `ok: false` with `error`. Results are in `names` order.
   * @throws {ComposeNotFoundError | EngineError} when nothing can be started at all
   */
  async startApps(names: string[], opts: { timeoutMs?: number; settleMs?: number } = {}): Promise<StartResult[]> {
    const compose = await this.composeCli();
    const results = new Map<string, StartResult>();
    const apps: { name: string; inst: InstalledApp; facts: ComposeFacts }[] = [];
    for (const name of names) {
      const inst = isAppName(name) ? await this.readInstalled(name) : undefined;
      if (!inst) {
        results.set(name, { name, ok: false, state: { uri: "", state: "unhealthy", services: [] }, error: `Cannot start app "${name}": not installed` });
        continue;
      }
      apps.push({ name, inst, facts: await this.facts(inst) });
    }
    const startOne = async ({ name, inst, facts }: { name: string; inst: InstalledApp; facts: ComposeFacts }): Promise<StartResult> => {
      const started = performance.now();
      try {
        // The engine's image store is not the app dir's: a power cut can keep the swapped dir
        // and lose the loaded images (or someone pruned them). Load them again from the blob
        // store rather than let compose try to pull a local tag from a registry.
        if (!(await this.imagesPresent(inst))) inst = await this.installApp({ name, uri: inst.uri });
        await this.freeContainerNames(name, facts);
        // compose itself gets its own, longer bound: creating containers is not the readiness wait.
        await compose.up(name, inst.dir, inst.composeFile, { timeoutMs: Math.max(opts.timeoutMs ?? 0, 5 * 60_000) });
      } catch (err) {
        const reports = await serviceReports(this.engine, name, this.services(inst, facts));
        return { name, ok: false, state: appState(inst.uri, reports), error: (err as Error).message };
      }
      const left = Math.max(1000, (opts.timeoutMs ?? 120_000) - (performance.now() - started));
      const waited = await waitForApp(this.engine, name, this.services(inst, facts), {
        timeoutMs: left,
        ...(opts.settleMs !== undefined ? { settleMs: opts.settleMs } : {}),
      });
      const r: StartResult = { name, ok: waited.ok, state: appState(inst.uri, waited.reports) };
      if (waited.error) r.error = waited.error;
      if (!waited.ok) r.appFailed = true;
      return r;
    };
    for (const wave of startWaves(apps)) {
      for (const r of await Promise.all(wave.map(startOne))) results.set(r.name, r);
    }
    return names.map((n) => results.get(n)!);
  }

  /**
   * Frees the `container_name`s this app's services take. An app renamed in the new target (or a
   * service moved to another app) left its old, stopped container under that name until the
   * complete step removes the old app, and `compose up` of the new one failed on it ("already in
   * use"), every time. Such a container of another compose project is renamed aside, not removed:
   * a rollback that starts its app again finds it (compose finds containers by their labels), and
   * its name is given back here first, so it starts with its anonymous volumes and its name. A
   * running container is left alone (two apps running claim the name: compose says so), and so is
   * one compose did not make.
   */
  private async freeContainerNames(app: string, facts: ComposeFacts): Promise<void> {
    if (facts.containerNames.size === 0) return;
    const project = projectName(app);
    const all = await this.engine.listContainers();
    const nameOf = (c: (typeof all)[number]) => (c.Names[0] ?? "").replace(/^\//, "");
    for (const c of all) {
      const owner = c.Labels["com.docker.compose.project"];
      if (!owner || owner === project || !facts.containerNames.has(nameOf(c)) || (c.State !== "exited" && c.State !== "created")) continue;
      await this.engine.renameContainer(c.Id, `${nameOf(c)}${ASIDE}${c.Id.slice(0, 12)}`);
    }
    // This app's own containers set aside by another app's start (a rollback to it): their names back.
    for (const c of all) {
      const [name, id] = nameOf(c).split(ASIDE);
      if (c.Labels["com.docker.compose.project"] !== project || id === undefined || !facts.containerNames.has(name!)) continue;
      await this.engine.renameContainer(c.Id, name!);
    }
  }

  /**
   * Stops the containers of each installed app in `names` (unknown names are
   * ignored), all at once, each with its service's stop signal and
   * `stop_grace_period` (the engine's default where none is set). Says for each
   * app how long it took and which service held the stop up.
   * @throws {EngineError}
   */
  async stopApps(names: string[]): Promise<StopResult[]> {
    const apps: InstalledApp[] = [];
    for (const name of names) {
      const inst = isAppName(name) ? await this.readInstalled(name) : undefined;
      if (inst) apps.push(inst);
    }
    return await Promise.all(
      apps.map(async (inst): Promise<StopResult> => {
        const started = performance.now();
        const { stopGrace } = await this.facts(inst);
        const containers = (await this.engine.listContainers([`com.docker.compose.project=${projectName(inst.name)}`])).filter(
          (c) => c.State === "running" || c.State === "restarting" || c.State === "paused",
        );
        const services = await Promise.all(
          containers.map(async (c) => {
            const service = c.Labels["com.docker.compose.service"] ?? c.Names[0] ?? c.Id;
            const grace = stopGrace.get(service);
            const t0 = performance.now();
            await this.engine.stopContainer(c.Id, grace);
            const ms = Math.round(performance.now() - t0);
            const after = await this.engine.inspectContainer(c.Id);
            // Exit code 137 after waiting out the grace period: it ignored its stop signal.
            const killed = after?.State.ExitCode === 137 && ms >= (grace ?? 10) * 1000 - 50;
            return { service, ms, killed, ...(grace !== undefined ? { graceSeconds: grace } : {}) };
          }),
        );
        const slowest = services.sort((x, y) => y.ms - x.ms)[0];
        return { name: inst.name, ms: Math.round(performance.now() - started), ...(slowest ? { slowest } : {}) };
      }),
    );
  }

  /** `compose down --remove-orphans`, then deletes the app dir. Unknown names are ignored. @throws {ComposeError} */
  async removeApp(name: string): Promise<void> {
    const dir = this.appDir(name);
    const inst = await this.readInstalled(name);
    if (inst) await (await this.composeCli()).down(name, inst.dir, inst.composeFile);
    // Rename first so a crash mid-delete never leaves a half app under its name.
    const trash = join(this.config.composeAppsRoot, `.${name}.removing-${Date.now().toString(36)}`);
    this.factsCache.delete(name);
    try {
      await rename(dir, trash);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw err;
    }
    await rm(trash, { recursive: true, force: true });
  }

  /** Current state of installed apps (all, or those of `names` that are installed), shaped for POST /apps-states. */
  async appsState(names?: string[]): Promise<Record<string, AppState>> {
    const apps = (await this.installedApps()).filter((a) => !names || names.includes(a.name));
    const out: Record<string, AppState> = {};
    for (const inst of apps) {
      out[inst.name] = appState(inst.uri, await serviceReports(this.engine, inst.name, this.services(inst, await this.facts(inst))));
    }
    return out;
  }

  /** The tags this runtime has loaded, from the ledger beside the apps (pruning never touches others). */
  private async readLedger(): Promise<Set<string>> {
    try {
      const doc = JSON.parse(await readFile(join(this.config.composeAppsRoot, LEDGER_FILE), "utf8")) as { tags?: unknown };
      return new Set(Array.isArray(doc.tags) ? doc.tags.filter((t): t is string => typeof t === "string") : []);
    } catch {
      return new Set();
    }
  }

  private async writeLedger(tags: Set<string>): Promise<void> {
    await writeFileAtomic(join(this.config.composeAppsRoot, LEDGER_FILE), `${JSON.stringify({ tags: [...tags].sort() }, null, 2)}\n`);
  }

  /** Read-modify-write of the ledger, one at a time within this process. */
  private updateLedger<T>(fn: (tags: Set<string>) => Promise<T>): Promise<T> {
    const run = this.ledgerQueue.then(async () => {
      const tags = await this.readLedger();
      const out = await fn(tags);
      await this.writeLedger(tags);
      return out;
    });
    this.ledgerQueue = run.catch(() => {});
    return run;
  }

  /**
   * Removes the local tags this runtime loaded (its ledger) that no installed
   * app uses and that are not in `keepTags`, then prunes dangling images created
   * more than DANGLING_GRACE ago: a newer one may be the last step of a build
   * another client of the engine is running (the legacy builder leaves it
   * untagged until the next step), and removing it would fail that build.
   * The images this runtime untags were built long before, and the ones it
   * removes by tag above go at once.
   * Tags still used by a container are kept; a prune another client is running already is left to
   * it. Returns the removed tags.
   * @throws {EngineError}
   */
  async pruneImages(keepTags: string[] = []): Promise<string[]> {
    const keep = new Set(keepTags);
    for (const app of await this.installedApps()) for (const img of app.images) keep.add(img.tag);
    const removed = await this.updateLedger(async (ledger) => {
      const gone: string[] = [];
      for (const tag of [...ledger]) {
        if (keep.has(tag)) continue;
        try {
          await this.engine.removeImage(tag);
          gone.push(tag);
          ledger.delete(tag);
        } catch {
          // in use by a container (409): keep it for a later prune
        }
      }
      return gone;
    });
    try {
      await this.engine.pruneImages({ olderThan: DANGLING_GRACE });
    } catch (err) {
      // 409: another prune runs on this engine (a second client of it, an operator's `docker image
      // prune`). The dangling images are that prune's, or the next one's; an update that reached
      // its cleanup stays complete.
      if (!(err instanceof EngineError && err.status === 409)) throw err;
    }
    return removed;
  }
}
