/**
 * `gateway publish`, the CI job as a library call: find the apps of a
 * containers checkout, interpolate their compose files, build their images,
 * push images the local engine holds, copy third-party images into the
 * factory registry, check every image runs on every hardware id, pin every
 * compose file, push reproducible bundles as compose-app artifacts, and only
 * when all of that succeeded, add the targets in one atomic call. Everything
 * that can be checked before the first push is, so bad input fails fast and
 * loses nothing; on any error no target is made.
 *
 * @module
 */
import { X509Certificate } from "node:crypto";
import { rmSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { makeOwnedFolder, removeDeadFolders } from "../../lib/fs/owned-folder.ts";
import { tmpdir } from "node:os";
import { join, resolve as resolvePath } from "node:path";
import { HardwareId, recordedLayerSizes, type TargetEntry } from "../../lib/api/target.ts";
import { firstValueProblem } from "../../lib/api/schema-problem.ts";
import { appManifest } from "../../lib/compose/app-manifest.ts";
import { APP_MANIFEST_MEDIA_TYPE, EMPTY_CONFIG_BYTES, EMPTY_CONFIG_DESCRIPTOR, IGNORE_FILE_NAME } from "../../lib/compose/app-format.ts";
import { createBundle } from "../../lib/compose/bundle.ts";
import { parseCompose, type ComposeFile } from "../../lib/compose/compose-file.ts";
import { parseDotEnv } from "../../lib/compose/interpolate.ts";
import { pinCompose } from "../../lib/compose/pin.ts";
import { FactoryConfigError, fullRef, platformsOf, readFactoryConfig, tagsForRef, type FactoryConfig } from "../../lib/factory-config/index.ts";
import { describePlatform, hwidForPlatform } from "../../lib/oci/hwid-platform.ts";
import { hostPlatform, parsePlatform, type Platform } from "../../lib/oci/platform.ts";
import { isRegistryHost } from "../../lib/oci/reference.ts";
import { gatewayRegistryClients } from "../../lib/oci/registry-clients.ts";
import { fetchPinnedCa } from "../../lib/tls/pin.ts";
import { AdminApiError, AdminClient, GatewayUnreachableError } from "../../lib/api/admin-client.ts";
import { publicUrlOf } from "../../lib/api/admin.ts";
import { dockerCredentials } from "./credentials.ts";
import { discover, gitIgnoredNote, type AppDir } from "./discover.ts";
import { checkHead, gitInfo } from "./git.ts";
import { ImageResolver, type ResolvedImage } from "./images.ts";
import { plainHttpHint } from "./plain-http-hint.ts";
import { contextsInBundle, ImageResolveError, planService, SHIPPED_TWICE_WARN_BYTES, topLevelBuild, type ServicePlan } from "./plan.ts";
import { checkPlatforms, hwidPlatforms } from "./platforms.ts";
import { checkVersionFree, makeTargets, nextVersion, RUNNING_LEAP_MAX, runningIgnored } from "./targets.ts";
import { ensureBlobs, ensureManifest, localSource, PushStats, type Destination } from "./transfer.ts";
import { exitInterrupted, exitOnSignal } from "../../lib/cli/interrupt.ts";
import { namedFew } from "../../lib/cli/few.ts";
import { sizeText } from "../../lib/cli/bytes.ts";

export class PublishError extends Error {
  override name = "PublishError";
}

export interface PublishOptions {
  /** The containers repo checkout (a git work tree). */
  containersDir: string;
  /** The git ref being published, e.g. `refs/heads/master`: HEAD must be the commit it names. */
  ref: string;
  /** The commit being published, when the checkout has no `ref` to compare HEAD with (detached CI checkouts). */
  commit?: string;
  /** The gateway's URL, e.g. `https://127.0.0.1:8443`. */
  server: string;
  /** The admin token `<secret>.<CA pin>`. */
  token: string;
  /** Factory name: the first path part of every repository. Default "main". */
  factory?: string;
  /** factory-config.yml with `containers.tagging`. */
  factoryConfig?: string;
  /** Hardware ids to make targets for; default from the platform. */
  hwids?: string[];
  /** Target version; default one above the highest existing. */
  version?: number;
  dryRun?: boolean;
  /** `linux/amd64`...: narrows third-party image indexes to one platform, sets the default hwid and the platform of unmapped hwids. */
  platform?: string;
  /** Hardware id → `os/arch[/variant]`, over factory-config.yml `containers.platforms` and the built-in map. */
  hwidPlatforms?: Record<string, string>;
  /** Push images and apps here (host:port) instead of the gateway's embedded registry. */
  registry?: string;
  /** Registries (host:port) spoken to over plain http. */
  insecureRegistries?: string[];
  /** Where to resolve images of a registry instead: `{"docker.io": "127.0.0.1:5000"}`. */
  mirrors?: Record<string, string>;
  /** Environment for docker (DOCKER_HOST) and credential lookup (DOCKER_CONFIG). */
  env?: Record<string, string | undefined>;
  /** Progress lines (stderr in the CLI). */
  log?: (line: string) => void;
  /** Bytes sent so far into a repository, of at most `total`, while a push uploads (often: the CLI shows it on a terminal). */
  onProgress?: (repo: string, sent: number, total: number) => void;
}

export interface PublishedService {
  name: string;
  image?: string;
  pinned: string;
}

export interface PublishedApp {
  name: string;
  uri: string;
  manifestDigest: string;
  bundleDigest: string;
  bundleSize: number;
  indexDigest: string;
  files: string[];
  services: PublishedService[];
}

export interface PublishedImage {
  name: string;
  source: "build" | "local" | "registry";
  from: string;
  pinned: string;
  /** Platforms the pinned image offers (`linux/amd64`...). */
  platforms: string[];
  reused?: boolean;
}

export interface PublishResult {
  factory: string;
  registry: string;
  ref: string;
  commit: string;
  /** Only when the work tree had uncommitted changes: what was published is not `commit`'s content (images tagged `<short hash>-dirty`, targets `containersDirty`). */
  dirty?: true;
  tags: string[];
  hardwareIds: string[];
  /** The platform each hardware id was checked against. */
  platforms: Record<string, string>;
  version: number;
  dryRun: boolean;
  apps: PublishedApp[];
  images: PublishedImage[];
  targets: Record<string, TargetEntry>;
  pushed: { bytes: number; blobs: number; blobsPresent: number; blobsMounted: number; manifests: number };
  durationMs: number;
}

/** App manifests are tagged `app-<git short hash>`; built images `<git short hash>`. */
export const APP_TAG_PREFIX = "app-";

/** Publish's scratch folder in the temp dir (saved images), and the lock naming its owner (lib/fs/owned-folder.ts). */
const PUBLISH_TMP_PREFIX = "gateway-publish-";
const OWNER_LOCK = ".owner.lock";

const FACTORY = /^[a-z0-9][a-z0-9_.-]*$/;

/**
 * Whether `registryHost` (`host[:port]`, as `--registry` takes it) is the host `server` names:
 * both read as URLs of the server's scheme, the registry's too when it is the gateway's, so a
 * default port written out (`gw.example:443` for `https://gw.example`), letter case, a trailing
 * dot or another spelling of one IP address (`127.1`) still match. Another name for the same
 * machine (an IP for its hostname) does not: nothing a registry answers tells the gateway apart
 * from an external registry that uses the gateway as its token realm, and taking such a registry
 * for the gateway would send it the admin token.
 */
export function isServerHost(registryHost: string, server: URL): boolean {
  const host = (u: URL) => `${u.hostname.replace(/\.$/, "")}:${u.port}`; // port "" when it is the scheme's default
  const registry = URL.parse(`${server.protocol}//${registryHost}`);
  return isRegistryHost(registryHost) && registry !== null && host(registry) === host(server);
}

/** Where publish pushes and what the targets it makes name: {@link gatewayRegistry}. */
export interface RegistryChoice {
  /** The registry host the targets name (`host[:port]`): for the gateway's, its public host. */
  registryHost: string;
  /** Where publish reaches that registry: --server's host, or --registry's when it names the gateway's public host. */
  pushHost: string;
  /** The registry is the gateway's: its token and CA, and manifests reused put again (transfer.ts). */
  onGateway: boolean;
  /** The gateway's public URL, or --server when the gateway does not say it. */
  publicUrl: URL;
}

/**
 * Which registry publish pushes to and under which host the targets name it. The gateway's own
 * (no --registry, or one naming --server's or the public URL's host in any spelling, `isServerHost`)
 * is named by the gateway's public host, whatever address --server or --registry reached it at:
 * devices, preload and export know the gateway's registry by that host alone (exact match) and
 * pull from any other without the device's certificate and the gateway's CA, and a replica's own
 * address (--server naming one replica behind a load balancer) is not theirs to reach. A gateway
 * that does not say its public URL (one before whoami carried it) is named as --server writes
 * it, and that is said. Another --registry is pushed to and named as written. How each host is
 * then reached (the public host at pushHost, the token and CA for the gateway's hosts, the gateway
 * as the token realm of others) is the mapping export and preload use too:
 * lib/oci/registry-clients.ts `gatewayRegistryClients`.
 */
export function gatewayRegistry(registry: string | undefined, server: URL, publicUrl: URL | undefined, log: (line: string) => void): RegistryChoice {
  const viaPublic = registry !== undefined && publicUrl !== undefined && isServerHost(registry, publicUrl) && !isServerHost(registry, server);
  const onGateway = isServerHost(registry ?? server.host, server) || viaPublic;
  if (!onGateway) return { registryHost: registry!, pushHost: registry!, onGateway, publicUrl: publicUrl ?? server };
  const pushHost = viaPublic ? registry! : server.host;
  if (!publicUrl) {
    log(
      `warning: the gateway at ${server.origin} does not say its public URL (an older gateway): the targets name its registry as --server writes it, ${server.host}; ` +
        "devices must reach the gateway at that address (give --server the URL devices use)",
    );
    return { registryHost: server.host, pushHost, onGateway, publicUrl: server };
  }
  const registryHost = publicUrl.host;
  if (registryHost !== server.host) log(`registry: the targets name the gateway's registry by its public URL, ${registryHost}, the address devices use; pushing through ${pushHost}`);
  return { registryHost, pushHost, onGateway, publicUrl };
}

/** The factory a gateway CA certificate names in its OU, if any. */
export function factoryOfCa(pem: string): string | undefined {
  const subject = new X509Certificate(pem).subject;
  const ou = /^OU=(.+)$/m.exec(subject)?.[1]?.trim();
  return ou && FACTORY.test(ou) ? ou : undefined;
}

/**
 * Publishes a containers checkout. See the module doc for the order of things.
 *
 * @example
 * ```ts
 * const r = await publish({ containersDir: "containers", ref: "refs/heads/master", server: gw.url, token: gw.adminToken });
 * r.apps[0].uri; // "127.0.0.1:8443/main/httpd@sha256:..."
 * ```
 * @throws {PublishError} (and the specific errors of compose, git, docker and registry steps)
 */
export async function publish(opts: PublishOptions): Promise<PublishResult> {
  const started = performance.now();
  const log = opts.log ?? (() => {});
  const env = opts.env ?? process.env;
  let factory = opts.factory ?? "main";
  const dryRun = opts.dryRun ?? false;
  if (opts.factory !== undefined && !FACTORY.test(opts.factory)) throw new PublishError(`Invalid factory name "${opts.factory}"`);
  const containersDir = resolvePath(opts.containersDir);

  // ---- validate everything before the first push -------------------------------------------
  let serverUrl: URL;
  try {
    serverUrl = new URL(opts.server);
  } catch {
    throw new PublishError(`Invalid --server "${opts.server}": not a URL`);
  }
  if (serverUrl.protocol === "http:") log(`warning: --server ${opts.server} is plain http: the token travels unencrypted and no CA is checked (a gateway listens on https)`);
  let platform: Platform | undefined;
  try {
    platform = opts.platform ? parsePlatform(opts.platform) : undefined;
  } catch (err) {
    throw new PublishError(`Invalid --platform: ${(err as Error).message}`);
  }
  const hwids = opts.hwids?.length ? [...new Set(opts.hwids)] : [hwidForPlatform(platform ?? hostPlatform())];
  const hwidProblem = firstValueProblem(HardwareId, hwids);
  if (hwidProblem) throw new PublishError(`Invalid --hwid: ${hwidProblem}`);
  if (opts.version !== undefined && !(Number.isSafeInteger(opts.version) && opts.version > 0)) {
    throw new PublishError(`Invalid version ${opts.version}: a positive integer is required`);
  }
  // A near miss of a top-level key (`container:`) is only warned about by the parser: say it, as preload does.
  const config: FactoryConfig = opts.factoryConfig ? await readFactoryConfig(opts.factoryConfig, { warn: (line) => log(`warning: ${line}`) }) : {};
  let tags: string[];
  try {
    ({ tags } = tagsForRef(config, opts.ref, "containers", opts.factoryConfig));
  } catch (err) {
    if (!(err instanceof FactoryConfigError) || opts.factoryConfig) throw err;
    throw new FactoryConfigError(
      `Cannot choose target tags for ${opts.ref}: it is not a branch usable as a tag, and no --factory-config was given to map it; give --factory-config FILE with a containers.tagging entry for ${fullRef(opts.ref)}`,
    );
  }
  // A factory-config.yml was given, yet no entry maps this ref (a misspelt ref key, or a feature branch): the tag is the branch name. Say so.
  const tagging = config.containers?.tagging ?? {};
  if (opts.factoryConfig && !tagging[fullRef(opts.ref)]?.length) {
    const keys = Object.keys(tagging);
    log(
      `tags: ${opts.factoryConfig} has no containers.tagging entry for ${fullRef(opts.ref)} (${keys.length ? `its entries: ${keys.join(", ")}` : "it has none"}), so the target tag is the branch name "${tags.join(", ")}"`,
    );
  }
  const { byHwid, built } = platformsOf(config.containers);
  // A factory that builds for one architecture (factory-config's list form) runs it on every device.
  const fallback = platform ?? (built.length === 1 ? built[0] : undefined) ?? (opts.hwids?.length ? undefined : hostPlatform());
  const platforms = hwidPlatforms(hwids, { ...byHwid, ...opts.hwidPlatforms }, fallback);
  const git = await gitInfo(containersDir);
  await checkHead(containersDir, opts.ref, git.sha, opts.commit);
  const imageTag = git.dirty ? `${git.shortSha}-dirty` : git.shortSha;
  if (git.dirty) log(`warning: ${containersDir} has uncommitted changes: images and apps are tagged ${imageTag} and rebuilt`);
  const { apps, builds } = await discover(containersDir);
  for (const app of apps) {
    const note = gitIgnoredNote(app);
    if (note) log(note);
  }

  const composes = new Map<string, ComposeFile>();
  for (const app of apps) composes.set(app.name, await readAppCompose(app, env));

  const ca = serverUrl.protocol === "https:" ? await fetchPinnedCa(serverUrl.toString(), opts.token) : undefined;
  // The gateway's CA names its factory (OU); devices may pull only <factory>/..., so default to it.
  if (opts.factory === undefined && ca) factory = factoryOfCa(ca) ?? factory;
  // Which services are built here and which come from elsewhere: decided (and references checked) up front.
  const plan = new Map<string, ServicePlan>();
  for (const app of apps) {
    for (const svc of composes.get(app.name)!.services) {
      plan.set(`${app.name}/${svc.name}`, planService(containersDir, app, svc, builds, factory));
    }
  }
  const insecure = new Set(opts.insecureRegistries ?? []);
  const admin = await AdminClient.connect({ server: serverUrl.toString(), token: opts.token, ...(ca ? { ca } : {}) });
  // The token works, and a --version already taken is said, before anything is built or pushed.
  const before = await admin.targets().catch((err: unknown) => {
    throw firstCallHint(err, serverUrl);
  });
  if (opts.version !== undefined) checkVersionFree(hwids, opts.version, before.targets, before.running);
  const who = await admin.whoami().catch(() => undefined); // an older gateway has no whoami: its registry refuses a viewer's push
  // A viewer token reads the targets too: refused here, not after every image is built.
  if (who?.role === "viewer")
    throw new AdminApiError(
      "This token is a viewer token: it may read the targets but not publish. Give --token (or GATEWAY_TOKEN) a publish token: `gateway tokens create --role publish` on the gateway makes one",
      403,
    );
  // The targets key offline (docs/keys.md, "Targets signed offline"): the gateway would refuse the targets, the last call, after
  // every image and app was built and pushed. Said here instead; a gateway that does not say it (an older one) refuses at that call.
  if (who?.canSignTargets === false)
    throw new AdminApiError(
      `The gateway at ${serverUrl.origin} cannot sign targets now: its TUF targets key is offline (not in its data dir's tuf/keys/), so it would refuse the targets after every image was built and pushed; ` +
        `nothing was built or pushed. Bring the targets key file back into the gateway's tuf/keys/ (every replica's) for the publish, then run it again (docs/keys.md, "Targets signed offline")`,
      409,
    );
  const { registryHost, pushHost, onGateway, publicUrl } = gatewayRegistry(opts.registry, serverUrl, publicUrlOf(who), log);
  log(`publishing ${containersDir} at ${imageTag} (${opts.ref} → tags ${tags.join(", ")}) to ${registryHost}/${factory}${dryRun ? " (dry run)" : ""}`);

  // The gateway's registry: reached at pushHost (or, with another --registry, at --server), and at --server's host as a
  // compose file may name it; what the targets name (its public host) is reached there. Any other registry: its Docker
  // config credentials, and the gateway as its token realm at the public URL.
  const clientFor = gatewayRegistryClients(
    {
      serverHost: onGateway ? pushHost : serverUrl.host,
      alsoAt: [serverUrl.host],
      publicUrl,
      token: opts.token,
      ...(ca ? { ca } : {}),
      plainHttp: new Set([...insecure, ...(serverUrl.protocol === "http:" ? [serverUrl.host] : [])]),
      // An external registry (--registry) uses the gateway as its token realm; a registry a compose file names does not.
      realmFor: (host) => !onGateway && host === registryHost,
    },
    (host) => {
      const creds = dockerCredentials(host, env);
      return { scheme: insecure.has(host) ? "http" : "https", ...(creds ? { auth: creds } : {}) };
    },
    { userAgent: "gateway-publish" },
  );

  // Saved images (hundreds of MB): a publish killed outright (a CI runner's timeout) leaves its
  // folder, removed by the next publish on this machine once its owner is gone.
  await removeDeadFolders(tmpdir(), PUBLISH_TMP_PREFIX, OWNER_LOCK);
  const tmp = await makeOwnedFolder(tmpdir(), PUBLISH_TMP_PREFIX, OWNER_LOCK);
  // Ctrl-C or SIGTERM (a cancelled CI job) ends the process without running the `finally` below:
  // docker is stopped (lib/cli/interrupt.ts), the scratch folder (saved images: hundreds of MB) removed, and what is left said.
  // Targets are added last, in one call: stopped before it, nothing is published; while it is
  // in flight, publish waits for the answer so it can say which.
  let posting = false;
  let stopping: NodeJS.Signals | undefined;
  const cleanUp = () => rmSync(tmp, { recursive: true, force: true });
  const stopNow = (signal: NodeJS.Signals, said: string) => {
    cleanUp();
    exitInterrupted("gateway publish", signal, said);
  };
  const releaseSignals = exitOnSignal("gateway publish", (signal) => {
    stopping = signal;
    if (posting) {
      process.stderr.write(`gateway publish: ${signal}: the targets are being added; stopping once the gateway answers\n`);
      return undefined;
    }
    cleanUp();
    return dryRun
      ? "nothing was pushed (dry run) and no target added"
      : "no target was added, so devices see nothing new; images and apps pushed so far stay in the registry, unused, and the next publish of this commit reuses them";
  });
  const stats = new PushStats();
  const dst: Destination = {
    client: clientFor(registryHost),
    stats,
    dryRun,
    tmpDir: tmp,
    refreshReused: onGateway, // its gc --untargeted must not collect what this publish reuses (transfer.ts)
    ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
  };
  try {
    const images = new ImageResolver({
      dst,
      registryHost,
      ...(onGateway ? { alsoHosts: [pushHost, serverUrl.host] } : {}),
      factory,
      imageTag,
      reuseBuilds: !git.dirty,
      clientFor,
      mirrors: opts.mirrors ?? {},
      ...(platform ? { platform } : {}),
      env,
      tmpDir: tmp,
      log,
    });
    const resolveService = async (app: AppDir, svcName: string): Promise<ResolvedImage> => {
      const p = plan.get(`${app.name}/${svcName}`)!;
      const svc = composes.get(app.name)!.services.find((s) => s.name === svcName)!;
      try {
        return "build" in p ? await images.build(p.build) : await images.image(svc.image!, p.ref, { containersDir, app });
      } catch (err) {
        if (err instanceof ImageResolveError) {
          // Same class (ImageNotFoundError stays one), now saying which service wanted it.
          const Same = err.constructor as new (message: string, options?: ErrorOptions) => ImageResolveError;
          throw new Same(`${err.message} (service "${svcName}" in app "${app.name}")`, { cause: err.cause ?? err });
        }
        throw err;
      }
    };

    // ---- referenced images first: one that cannot be found fails before any build ----------------
    for (const app of apps) {
      for (const svc of composes.get(app.name)!.services) {
        if (!("build" in plan.get(`${app.name}/${svc.name}`)!)) await resolveService(app, svc.name);
      }
    }
    // ---- images built here: every top-level Dockerfile, then services' own build contexts --------
    for (const b of builds) await images.build(topLevelBuild(b));
    const byService = new Map<string, ResolvedImage>();
    for (const app of apps) {
      for (const svc of composes.get(app.name)!.services) byService.set(`${app.name}/${svc.name}`, await resolveService(app, svc.name));
    }

    // ---- every image runs on every hardware id, before any app or target is pushed -----------------
    checkPlatforms(
      [...byService.entries()].map(([where, img]) => {
        const [app, service] = where.split("/") as [string, string];
        return { image: img.from === img.pinned ? img.pinned : `${img.from} (${img.source})`, where: `app "${app}" service "${service}"`, platforms: img.platforms };
      }),
      platforms,
    );

    // ---- apps ----------------------------------------------------------------------------------
    const published: PublishedApp[] = [];
    const layerSizes: Record<string, Record<string, number>> = {};
    // Layers whose unpacked size this run did not see (a reused build, a registry copy): earlier targets may know it.
    const missingSizes: [string, string][] = [];
    for (const app of apps) {
      const compose = composes.get(app.name)!;
      const pinned = await pinCompose(compose, async (svc) => byService.get(`${app.name}/${svc.name}`)!.pinned);
      for (const note of pinned.notes) log(note);
      layerSizes[app.name] = {};
      for (const svc of compose.services) {
        const img = byService.get(`${app.name}/${svc.name}`)!;
        Object.assign(layerSizes[app.name]!, img.uncompressedSizes);
        for (const d of img.layers) if (!(d in img.uncompressedSizes)) missingSizes.push([app.name, d]);
      }
      const bundle = await createBundle(app.dir, { composeFileName: app.composeFileName, composeText: pinned.text, outFile: join(tmp, `${app.name}.tgz`), exclude: app.gitIgnored });
      for (const c of contextsInBundle(app, plan)) {
        if (c.bytes < SHIPPED_TWICE_WARN_BYTES) continue;
        const what = `${c.files} file${c.files === 1 ? "" : "s"}, ${sizeText(c.bytes)}`;
        const of = `service${c.services.length === 1 ? "" : "s"} ${c.services.map((n) => `"${n}"`).join(", ")}`;
        log(
          c.folder
            ? `warning: app ${app.name}: its bundle carries ${c.folder}, the build context of ${of} (${what}), which the image holds already, so every device downloads it twice; add ${c.folder} to ${app.name}/${IGNORE_FILE_NAME} unless a service reads files from it at run time (a bind mount, an env_file)`
            : `warning: app ${app.name}: the app folder is the build context of ${of}, so its bundle carries the sources the image holds already (${what}) and every device downloads them twice; move the Dockerfile and its sources to a folder of their own, or list them in ${app.name}/${IGNORE_FILE_NAME}`,
        );
      }
      const index = { digest: bundle.indexDigest, size: bundle.indexBytes.byteLength };
      const manifest = appManifest({ digest: bundle.digest, size: bundle.size }, index);
      const repo = `${factory}/${app.name}`;
      await ensureBlobs(
        dst,
        repo,
        [{ mediaType: "application/octet-stream", digest: bundle.digest, size: bundle.size }, { mediaType: "application/json", ...index }, EMPTY_CONFIG_DESCRIPTOR],
        localSource(new Map<string, Uint8Array | { path: string }>([[bundle.digest, { path: bundle.path }], [index.digest, bundle.indexBytes], [EMPTY_CONFIG_DESCRIPTOR.digest, EMPTY_CONFIG_BYTES]])),
      );
      // The app and its built image may share a repository (<factory>/<app>): the app's tag says it is the app.
      await ensureManifest(dst, repo, { bytes: manifest.bytes, mediaType: APP_MANIFEST_MEDIA_TYPE, digest: manifest.digest }, `${APP_TAG_PREFIX}${imageTag}`);
      const uri = `${registryHost}/${repo}@${manifest.digest}`;
      log(`app ${app.name}: ${dryRun ? "would push" : "pushed"} ${uri}`);
      published.push({
        name: app.name,
        uri,
        manifestDigest: manifest.digest,
        bundleDigest: bundle.digest,
        bundleSize: bundle.size,
        indexDigest: bundle.indexDigest,
        files: Object.keys(bundle.index),
        services: compose.services.map((s) => ({ name: s.name, ...(s.image ? { image: s.image } : {}), pinned: pinned.pins[s.name]!.to })),
      });
    }

    // ---- targets: last, in one call; made again from a fresh read if another publish signed first (409) ----
    let version: number;
    let targets: Record<string, TargetEntry>;
    let unchanged: string[] = [];
    for (let attempt = 1; ; attempt++) {
      const current = await admin.targets();
      const known = recordedLayerSizes(...Object.values(current.targets).map((t) => t.custom));
      for (const [app, d] of missingSizes) if (known.has(d)) layerSizes[app]![d] = known.get(d)!;
      version = opts.version ?? nextVersion(current.targets, current.running);
      const farClaims = runningIgnored(current.targets, current.running);
      if (attempt === 1 && opts.version === undefined && farClaims.length > 0) {
        log(
          `note: devices report running ${namedFew(farClaims, 3)}, more than ${RUNNING_LEAP_MAX} versions above the targets this gateway holds: ` +
            `not numbered above (a device says what it runs itself); if such a target was published on a gateway since lost, give --version above it`,
        );
      }
      targets = makeTargets(
        {
          hwids,
          tags,
          version,
          apps: Object.fromEntries(published.map((a) => [a.name, a.uri])),
          uncompressedLayerSizes: layerSizes,
          containersSha: git.sha,
          containersDirty: git.dirty,
        },
        current.targets,
      );
      unchanged = sameAppsAs(targets, current.targets);
      if (dryRun) break;
      try {
        posting = true;
        await admin.addTargets(targets, current.version);
        posting = false;
        if (stopping) stopNow(stopping, `after the gateway added ${Object.keys(targets).join(", ")}: the publish is complete`);
        break;
      } catch (e) {
        posting = false;
        if (stopping) stopNow(stopping, `the gateway did not add the targets (${(e as Error).message}): nothing is published`);
        if (!(e instanceof AdminApiError && e.status === 409) || attempt >= 10) throw e;
        if ((await admin.targets()).version === current.version) throw e; // refused for another reason (e.g. targets key offline)
        log(`targets: another publish signed targets.json meanwhile; numbering again from the new version`);
      }
    }
    log(`targets: ${dryRun ? "would add" : "added"} ${Object.keys(targets).join(", ")}`);
    // A re-run on the same commit makes targets devices will see as new, with nothing new in them: say so.
    for (const line of unchanged) log(`targets: ${line}`);
    const resolved = await images.all();
    return {
      factory,
      registry: registryHost,
      ref: opts.ref,
      commit: git.sha,
      ...(git.dirty ? { dirty: true as const } : {}),
      tags,
      hardwareIds: hwids,
      platforms: Object.fromEntries([...platforms].map(([h, p]) => [h, describePlatform(p)])),
      version,
      dryRun,
      apps: published,
      images: resolved
        .map((i) => ({ name: i.name, source: i.source, from: i.from, pinned: i.pinned, platforms: i.platforms.map(describePlatform), ...(i.reused ? { reused: true } : {}) }))
        .sort((a, b) => a.pinned.localeCompare(b.pinned)),
      targets,
      pushed: { bytes: stats.bytesPushed, blobs: stats.blobsPushed, blobsPresent: stats.blobsPresent, blobsMounted: stats.blobsMounted, manifests: stats.manifestsPushed },
      durationMs: Math.round(performance.now() - started),
    };
  } catch (err) {
    throw plainHttpHint(err, insecure);
  } finally {
    releaseSignals();
    await rm(tmp, { recursive: true, force: true });
  }
}

/**
 * The first admin call's failure, with what to do about the two usual causes: a token the
 * gateway does not take (wrong, revoked, expired: 401/403) and an `http://` --server for a
 * gateway that speaks HTTPS. The same class, so the exit code stays (3, 4).
 */
function firstCallHint(err: unknown, server: URL): unknown {
  if (err instanceof GatewayUnreachableError) {
    if (server.protocol !== "http:") return err;
    return new GatewayUnreachableError(`${err.message} (the gateway speaks HTTPS: give --server https://${server.host})`, err.status, { cause: err });
  }
  if (err instanceof AdminApiError && (err.status === 401 || err.status === 403)) {
    return new AdminApiError(
      `${err.message} (give --token, or GATEWAY_TOKEN, a publish token of this gateway: \`gateway tokens create --role publish\` on it makes one; \`gateway tokens list\` shows which are revoked or expired)`,
      err.status,
      { cause: err },
    );
  }
  return err;
}

/**
 * For each new target, the newest existing one of the same hardware id and tags that pins the
 * very same apps, as `"<new> pins the same apps as <old>: nothing changed since"`.
 */
function sameAppsAs(made: Record<string, TargetEntry>, existing: Record<string, TargetEntry>): string[] {
  const uris = (t: TargetEntry) => JSON.stringify(Object.entries(t.custom.docker_compose_apps ?? {}).map(([n, a]) => [n, a.uri]).sort());
  const out: string[] = [];
  for (const [name, t] of Object.entries(made)) {
    let latest: [string, TargetEntry] | undefined;
    for (const [n, e] of Object.entries(existing)) {
      if (e.custom.hardwareIds.join() !== t.custom.hardwareIds.join() || [...e.custom.tags].sort().join() !== [...t.custom.tags].sort().join()) continue;
      if (!latest || Number(e.custom.version) > Number(latest[1].custom.version)) latest = [n, e];
    }
    if (latest && uris(latest[1]) === uris(t)) out.push(`${name} pins the same apps as ${latest[0]}: nothing changed since`);
  }
  return out;
}


/**
 * Reads and interpolates an app's compose file: variables from the
 * publishing environment, then the app's `.env` unless git ignores it (the
 * commit does not hold it; discover.ts listed the app's bundle, so
 * `.composeappignores` already parsed and spared the compose file).
 */
async function readAppCompose(app: AppDir, env: Record<string, string | undefined>): Promise<ComposeFile> {
  const rel = join(app.name, app.composeFileName);
  const dotEnvText = app.gitIgnored.includes(".env") ? undefined : await readFile(join(app.dir, ".env"), "utf8").catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw new PublishError(`Cannot read ${join(app.name, ".env")}: ${err.message}`);
  });
  const dotEnv = dotEnvText === undefined ? {} : parseDotEnv(dotEnvText, join(app.name, ".env"), env);
  const variables = (n: string) => env[n] ?? (Object.hasOwn(dotEnv, n) ? dotEnv[n] : undefined);
  return parseCompose(await readFile(join(app.dir, app.composeFileName)), rel, { variables });
}
