/**
 * `gateway publish`, the CI job of SPEC §1 as a library call: find the apps of
 * a containers checkout, build their images, copy third-party images into the
 * factory registry, pin every compose file, push reproducible bundles as
 * compose-app artifacts, and only when all of that succeeded, add the targets
 * in one atomic call. Everything is validated before the first push, so bad
 * input fails fast and loses nothing; on any error no target is made.
 *
 * @module
 */
import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve as resolvePath } from "node:path";
import type { TargetEntry } from "../../lib/api/target.ts";
import { appManifest } from "../../lib/compose/app-manifest.ts";
import { APP_MANIFEST_MEDIA_TYPE, EMPTY_CONFIG_BYTES, EMPTY_CONFIG_DESCRIPTOR } from "../../lib/compose/app-format.ts";
import { createBundle, listBundleFiles } from "../../lib/compose/bundle.ts";
import { parseCompose, type ComposeFile, type ComposeService } from "../../lib/compose/compose-file.ts";
import { pinCompose } from "../../lib/compose/pin.ts";
import { readDockerArchiveImage } from "../../lib/oci/docker-archive.ts";
import { parseManifest } from "../../lib/oci/manifest.ts";
import { hostPlatform, parsePlatform, type Platform } from "../../lib/oci/platform.ts";
import { parseReference, type Reference } from "../../lib/oci/reference.ts";
import { RegistryClient } from "../../lib/oci/registry-client.ts";
import { fetchPinnedCa } from "../../lib/tls/pin.ts";
import { AdminApiError, AdminClient } from "../../lib/api/admin-client.ts";
import { copyImage } from "./copy-image.ts";
import { dockerCredentials } from "./credentials.ts";
import { discover, type AppDir, type BuildDir } from "./discover.ts";
import { dockerBuild, dockerSave } from "./docker.ts";
import { tagsForRef } from "./factory-config.ts";
import { gitInfo } from "./git.ts";
import { defaultHwid, makeTargets, nextVersion } from "./targets.ts";
import { ensureBlobs, ensureManifest, localSource, PushStats, type Destination } from "./transfer.ts";

export class PublishError extends Error {
  override name = "PublishError";
}

/** A service image that cannot be resolved: names the app, the service and the reference. */
export class ImageResolveError extends PublishError {
  override name = "ImageResolveError";
}

export interface PublishOptions {
  /** The containers repo checkout (a git work tree). */
  containersDir: string;
  /** The git ref being published, e.g. `refs/heads/master`. */
  ref: string;
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
  /** `linux/amd64`...: narrows third-party image indexes to one platform and sets the default hwid. */
  platform?: string;
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
  source: "build" | "registry";
  from: string;
  pinned: string;
  reused?: boolean;
}

export interface PublishResult {
  factory: string;
  registry: string;
  ref: string;
  commit: string;
  tags: string[];
  hardwareIds: string[];
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

/** The image already pushed under `tag` for this commit, if it is an image (not an app artifact). */
async function builtImageFor(client: RegistryClient, repo: string, tag: string): Promise<{ digest: string } | undefined> {
  const head = await client.headManifest(repo, tag).catch(() => undefined);
  if (!head) return undefined;
  try {
    const m = await client.getManifest(repo, head.digest);
    const p = parseManifest(m.bytes, m.mediaType);
    if (p.kind === "manifest" && p.manifest.artifactType === undefined && !p.manifest.config.mediaType.includes("empty")) return { digest: m.digest };
  } catch {
    // unreadable: rebuild
  }
  return undefined;
}

const FACTORY = /^[a-z0-9][a-z0-9_.-]*$/;

/** The factory a gateway CA certificate names in its OU, if any. */
export function factoryOfCa(pem: string): string | undefined {
  const subject = new X509Certificate(pem).subject;
  const ou = /^OU=(.+)$/m.exec(subject)?.[1]?.trim();
  return ou && FACTORY.test(ou) ? ou : undefined;
}

const HWID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

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
  const platform: Platform | undefined = opts.platform ? parsePlatform(opts.platform) : undefined;
  const hwids = opts.hwids?.length ? [...new Set(opts.hwids)] : [defaultHwid(platform ?? hostPlatform())];
  for (const h of hwids) if (!HWID.test(h)) throw new PublishError(`Invalid hardware id "${h}"`);
  if (opts.version !== undefined && !(Number.isSafeInteger(opts.version) && opts.version > 0)) {
    throw new PublishError(`Invalid version ${opts.version}: a positive integer is required`);
  }
  const factoryConfigText = opts.factoryConfig ? await readFile(opts.factoryConfig, "utf8").catch((cause) => {
    throw new PublishError(`Cannot read the factory config ${opts.factoryConfig}`, { cause });
  }) : undefined;
  const tags = tagsForRef(factoryConfigText, opts.ref, opts.factoryConfig);
  const git = await gitInfo(containersDir);
  const imageTag = git.dirty ? `${git.shortSha}-dirty` : git.shortSha;
  if (git.dirty) log(`warning: ${containersDir} has uncommitted changes: images and apps are tagged ${imageTag} and rebuilt`);
  const { apps, builds } = await discover(containersDir);

  const composes = new Map<string, ComposeFile>();
  for (const app of apps) {
    const file = join(app.dir, app.composeFileName);
    composes.set(app.name, parseCompose(await readFile(file), join(app.name, app.composeFileName)));
    await listBundleFiles(app.dir, app.composeFileName); // ignore rules parse, and spare the compose file
  }

  const ca = serverUrl.protocol === "https:" ? await fetchPinnedCa(serverUrl.toString(), opts.token) : undefined;
  // The gateway's CA names its factory (OU); devices may pull only <factory>/..., so default to it.
  if (opts.factory === undefined && ca) factory = factoryOfCa(ca) ?? factory;
  // Which services are built here and which come from a registry: decided (and references checked) up front.
  const plan = new Map<string, { build?: BuildDir; ref?: Reference }>();
  for (const app of apps) {
    for (const svc of composes.get(app.name)!.services) {
      plan.set(`${app.name}/${svc.name}`, planService(app, svc, builds, factory));
    }
  }
  const registryHost = opts.registry ?? serverUrl.host;
  const insecure = new Set(opts.insecureRegistries ?? []);
  const onGateway = registryHost === serverUrl.host;
  log(`publishing ${containersDir} at ${git.shortSha} (${opts.ref} → tags ${tags.join(", ")}) to ${registryHost}/${factory}${dryRun ? " (dry run)" : ""}`);
  const admin = await AdminClient.connect({ server: serverUrl.toString(), token: opts.token, ...(ca ? { ca } : {}) });
  await admin.targets(); // the token works before anything is built

  const clients = new Map<string, RegistryClient>();
  const clientFor = (host: string): RegistryClient => {
    let c = clients.get(host);
    if (!c) {
      const own = host === registryHost && onGateway;
      const creds = own ? { token: opts.token } : dockerCredentials(host, env);
      c = new RegistryClient({
        registry: host,
        scheme: insecure.has(host) || (own && serverUrl.protocol === "http:") ? "http" : "https",
        ...(creds ? { auth: creds } : {}),
        ...(own && ca ? { tls: { ca } } : {}),
        userAgent: "gateway-publish",
      });
      clients.set(host, c);
    }
    return c;
  };

  const tmp = await mkdtemp(join(tmpdir(), "gateway-publish-"));
  const stats = new PushStats();
  const dst: Destination = { client: clientFor(registryHost), stats, dryRun, tmpDir: tmp };
  try {
    const images: PublishedImage[] = [];
    // ---- third-party images first: a reference that does not resolve fails before any build ----
    const copied = new Map<string, Promise<string>>();
    const resolveRegistryImage = (ref: Reference): Promise<string> => {
      const key = `${ref.registry}/${ref.repository}:${ref.tag ?? ""}@${ref.digest ?? ""}`;
      let p = copied.get(key);
      if (!p) {
        p = (async () => {
          const srcHost = opts.mirrors?.[ref.registry] ?? ref.registry;
          // Already in the factory registry: pin in place. Otherwise <factory>/<path without library/>.
          const dstRepo = ref.registry === registryHost ? ref.repository : `${factory}/${ref.repository.replace(/^library\//, "")}`;
          const m = await copyImage(clientFor(srcHost), ref.repository, ref.digest ?? ref.tag ?? "latest", dst, dstRepo, platform ? { platform } : {});
          const pinned = `${registryHost}/${dstRepo}@${m.digest}`;
          const from = `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ""}${ref.digest ? `@${ref.digest}` : ""}`;
          log(`image ${from}: ${dryRun ? "resolved" : "copied"} to ${pinned}`);
          images.push({ name: ref.repository.replace(/^library\//, ""), source: "registry", from, pinned });
          return pinned;
        })();
        copied.set(key, p);
      }
      return p;
    };

    for (const app of apps) {
      for (const svc of composes.get(app.name)!.services) {
        const p = plan.get(`${app.name}/${svc.name}`)!;
        if (!p.ref) continue;
        try {
          await resolveRegistryImage(p.ref);
        } catch (cause) {
          throw new ImageResolveError(
            `Cannot copy image "${svc.image}" of service "${svc.name}" in app "${app.name}" into ${registryHost}: ${(cause as Error).message}`,
            { cause },
          );
        }
      }
    }

    // ---- images built here ---------------------------------------------------------------------
    const built = new Map<string, string>();
    for (const b of builds) {
      const repo = `${factory}/${b.name}`;
      const have = git.dirty ? undefined : await builtImageFor(dst.client, repo, imageTag);
      if (have) {
        const pinned = `${registryHost}/${repo}@${have.digest}`;
        log(`image ${b.name}: ${registryHost}/${repo}:${imageTag} already pushed for this commit (${have.digest})`);
        built.set(b.name, pinned);
        images.push({ name: b.name, source: "build", from: `${b.name}/Dockerfile`, pinned, reused: true });
        continue;
      }
      const localTag = `${registryHost}/${repo}:${imageTag}`;
      log(`image ${b.name}: docker build ${b.dir}`);
      await dockerBuild(b.dir, localTag, { env, ...(opts.platform ? { platform: opts.platform } : {}) });
      const tarPath = join(tmp, `${b.name}.tar`);
      await dockerSave(localTag, tarPath, { env });
      const img = await readDockerArchiveImage(tarPath, { tmpDir: tmp });
      try {
        await ensureBlobs(dst, repo, [img.manifest.config, ...img.manifest.layers], img.source);
        await ensureManifest(dst, repo, { bytes: img.manifestBytes, mediaType: img.manifest.mediaType!, digest: img.digest }, imageTag);
      } finally {
        await img.close();
      }
      const pinned = `${registryHost}/${repo}@${img.digest}`;
      log(`image ${b.name}: ${dryRun ? "would push" : "pushed"} ${registryHost}/${repo}:${imageTag} (${img.digest})`);
      built.set(b.name, pinned);
      images.push({ name: b.name, source: "build", from: `${b.name}/Dockerfile`, pinned });
    }

    // ---- apps ----------------------------------------------------------------------------------
    const published: PublishedApp[] = [];
    for (const app of apps) {
      const compose = composes.get(app.name)!;
      const pinned = await pinCompose(compose, async (svc) => {
        const p = plan.get(`${app.name}/${svc.name}`)!;
        return p.build ? built.get(p.build.name)! : await resolveRegistryImage(p.ref!);
      });
      const bundle = await createBundle(app.dir, { composeFileName: app.composeFileName, composeText: pinned.text, outFile: join(tmp, `${app.name}.tgz`) });
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
    for (let attempt = 1; ; attempt++) {
      const current = await admin.targets();
      version = opts.version ?? nextVersion(current.targets);
      targets = makeTargets(
        { hwids, tags, version, apps: Object.fromEntries(published.map((a) => [a.name, a.uri])), containersSha: git.sha },
        current.targets,
      );
      if (dryRun) break;
      try {
        await admin.addTargets(targets, current.version);
        break;
      } catch (e) {
        if (!(e instanceof AdminApiError && e.status === 409) || attempt >= 10) throw e;
        if ((await admin.targets()).version === current.version) throw e; // refused for another reason (e.g. targets key offline)
        log(`targets: another publish signed targets.json meanwhile; numbering again from the new version`);
      }
    }
    log(`targets: ${dryRun ? "would add" : "added"} ${Object.keys(targets).join(", ")}`);
    return {
      factory,
      registry: registryHost,
      ref: opts.ref,
      commit: git.sha,
      tags,
      hardwareIds: hwids,
      version,
      dryRun,
      apps: published,
      images: images.sort((a, b) => a.pinned.localeCompare(b.pinned)),
      targets,
      pushed: { bytes: stats.bytesPushed, blobs: stats.blobsPushed, blobsPresent: stats.blobsPresent, blobsMounted: stats.blobsMounted, manifests: stats.manifestsPushed },
      durationMs: Math.round(performance.now() - started),
    };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Decides where a service's image comes from: a Dockerfile built here, or a registry. */
function planService(app: AppDir, svc: ComposeService, builds: BuildDir[], factory: string): { build?: BuildDir; ref?: Reference } {
  const where = `service "${svc.name}" in app "${app.name}"`;
  if (svc.build && svc.buildContext !== undefined) {
    const ctx = resolvePath(app.dir, svc.buildContext);
    const b = builds.find((x) => resolvePath(x.dir) === ctx);
    if (b) return { build: b };
  }
  if (!svc.image) {
    throw new ImageResolveError(`Cannot publish ${where}: its build context is not a top-level directory with a Dockerfile, and it names no image`);
  }
  let ref: Reference;
  try {
    ref = parseReference(svc.image);
  } catch (err) {
    throw new ImageResolveError(`Cannot publish ${where}: ${(err as Error).message}`);
  }
  const last = ref.repository.split("/").pop()!;
  const b = builds.find((x) => x.name === last);
  if (b && !ref.digest) {
    const bare = ref.registry === "docker.io" && ref.repository === `library/${last}` && !svc.image.includes("/");
    if (bare || ref.repository === `${factory}/${last}`) return { build: b };
  }
  if (svc.build) {
    throw new ImageResolveError(`Cannot publish ${where}: its build context is not a top-level directory with a Dockerfile`);
  }
  return { ref };
}
