/**
 * Turning every planned image into a pinned reference in the factory
 * registry, each at most once per publish:
 *
 * - a build: `docker build`, `docker save`, pushed as `<factory>/<name>:<git
 *   short hash>` (reused when a clean checkout already pushed it for the same
 *   platform);
 * - an image the local engine holds (by name or digest): saved from there and
 *   pushed as `<factory>/<repository>`; air-gapped CI needs no registry for it;
 * - anything else: copied byte-exact from its registry (or its `--mirror`).
 *
 * An image found nowhere is one error that says where publish looked, and, when
 * its name is a folder of the checkout, why publish did not build that folder.
 * Each
 * result carries the platforms it offers (for the hardware-id check) and the
 * unpacked size of each layer publish saw (for the device's space check).
 *
 * @module
 */
import { statSync } from "node:fs";
import { join } from "node:path";
import { readDockerArchiveImage } from "../../lib/oci/docker-archive.ts";
import { parseManifest } from "../../lib/oci/manifest.ts";
import { describePlatform } from "../../lib/oci/hwid-platform.ts";
import { hostPlatform, platformOfConfig, platformRank, type Platform } from "../../lib/oci/platform.ts";
import { formatReference, referenceTarget, type Reference } from "../../lib/oci/reference.ts";
import type { FetchedManifest, RegistryClient } from "../../lib/oci/registry-client.ts";
import { copyImage } from "./copy-image.ts";
import { buildContext } from "./build-context.ts";
import { dockerBuild, dockerInspectImage, dockerSave, engineName } from "./docker.ts";
import { leftOutText } from "./git.ts";
import type { AppDir } from "./discover.ts";
import type { BuildSpec } from "./plan.ts";
import { ImageResolveError } from "./plan.ts";
import { printable } from "../../lib/cli/printable.ts";
import { namedFew } from "../../lib/cli/few.ts";
import { ensureBlobs, ensureManifest, type Destination } from "./transfer.ts";

/** The legacy builder's banner (no buildx): noise in every build's output. */
const LEGACY_BUILDER_NOTICE = /DEPRECATED: The legacy builder|Install the buildx component|docs\.docker\.com\/go\/buildx/;

/** An image that is neither in the local engine nor in its registry: says where publish looked. */
export class ImageNotFoundError extends ImageResolveError {
  override name = "ImageNotFoundError";
}

/** Where a service's `image:` was written: the containers checkout and the app whose compose file names it. */
export interface ImageWrittenIn {
  containersDir: string;
  app: AppDir;
}

/**
 * Why publish built no folder for an image it cannot find, when the image's name (`image: api`, or
 * `<factory>/api`, the names plan.ts takes for a top-level build) is a folder of the checkout:
 * a top-level folder builds only with a Dockerfile in it (discover.ts), a folder inside an app only
 * through the service's own `build:` key (plan.ts). Undefined when no such folder exists.
 */
function unbuiltFolder(written: string, ref: Reference, factory: string, where: ImageWrittenIn): string | undefined {
  const name = ref.repository.split("/").pop()!;
  if (ref.digest || (written.includes("/") && ref.repository !== `${factory}/${name}`)) return undefined;
  const isDir = (p: string) => statSync(p, { throwIfNoEntry: false })?.isDirectory() ?? false;
  const isFile = (p: string) => statSync(p, { throwIfNoEntry: false })?.isFile() ?? false;
  const hints: string[] = [];
  if (isDir(join(where.containersDir, name)))
    hints.push(`the folder ${name}/ of the containers checkout holds no Dockerfile: publish builds "image: ${name}" from a top-level folder only when it holds one`);
  const inApp = join(where.app.dir, name);
  if (isDir(inApp)) {
    const shown = `${where.app.name}/${name}/`;
    hints.push(
      isFile(join(inApp, "Dockerfile"))
        ? `the app's folder ${shown} has a Dockerfile, but a service is built from a folder only with a build: key (build: ./${name} in ${where.app.name}/${where.app.composeFileName})`
        : `the app's folder ${shown} holds no Dockerfile, and a service is built from a folder only with a build: key (build: ./${name} in ${where.app.name}/${where.app.composeFileName}, with a Dockerfile in ${shown})`,
    );
  }
  if (!hints.length) return undefined;
  const text = hints.join("; and ");
  return text[0]!.toUpperCase() + text.slice(1);
}

/** One image as pinned. */
export interface ResolvedImage {
  /** `<registry>/<repo>@sha256:...` */
  pinned: string;
  /** What was built or referenced. */
  from: string;
  source: "build" | "local" | "registry";
  /** The repository name under the factory, for the report. */
  name: string;
  platforms: Platform[];
  /** Layer digest → unpacked bytes, where publish knows it. */
  uncompressedSizes: Record<string, number>;
  /** Digests of the image's layers, when it is a single image (not an index). */
  layers: string[];
  /** True when a build was already pushed for this commit and reused. */
  reused?: boolean;
}

export interface ImageResolverOptions {
  dst: Destination;
  /** The factory registry host (`host:port`). */
  registryHost: string;
  /** Other names of the factory registry (publish's --server host, the host it pushes through): an image named by one is in it already. */
  alsoHosts?: readonly string[];
  factory: string;
  /** Tag for builds: the git short hash (`-dirty` on an unclean tree). */
  imageTag: string;
  /** Built images may be reused from the registry (a clean checkout). */
  reuseBuilds: boolean;
  clientFor(host: string): RegistryClient;
  mirrors: Record<string, string>;
  /** Narrow third-party indexes to this platform. */
  platform?: Platform;
  env: Record<string, string | undefined>;
  tmpDir: string;
  log(line: string): void;
}

/** Resolves and pushes images, each once. */
export class ImageResolver {
  private readonly done = new Map<string, Promise<ResolvedImage>>();
  constructor(private readonly o: ImageResolverOptions) {}

  /** All images resolved so far (after every promise settled). */
  async all(): Promise<ResolvedImage[]> {
    return await Promise.all(this.done.values());
  }

  private once(key: string, make: () => Promise<ResolvedImage>): Promise<ResolvedImage> {
    let p = this.done.get(key);
    if (!p) {
      p = make();
      this.done.set(key, p);
    }
    return p;
  }

  /** Builds (or reuses) a build spec's image. @throws {DockerCommandError | RegistryError} */
  build(b: BuildSpec): Promise<ResolvedImage> {
    return this.once(`build\0${b.key}`, async () => {
      const { dst, registryHost, factory } = this.o;
      const repo = `${factory}/${b.name}`;
      const tag = b.variant ? `${this.o.imageTag}-${b.variant}` : this.o.imageTag;
      if (this.o.reuseBuilds) {
        const have = await builtImageFor(dst.client, repo, tag);
        // The tag names the commit, not the platform: a CI matrix that publishes one commit for amd64,
        // then for arm64, finds the amd64 build under it. Reused, it failed the platform check the
        // second time; so only a build for the platform this one would make is reused (without
        // --platform, the host's: an engine of another architecture at DOCKER_HOST only rebuilds).
        const want = this.o.platform ?? hostPlatform();
        // Exactly that platform: an older variant would run, but this build would be made for the newer one.
        const other = have && !have.platforms.some((p) => platformRank(want, p) === 0);
        if (other) this.o.log(`image ${b.name}: ${registryHost}/${repo}:${tag} already pushed for this commit is ${have.platforms.map(describePlatform).join(", ") || "of no platform"}, not ${describePlatform(want)}: building it`);
        if (have && !other) {
          await ensureManifest(dst, repo, have.manifest, tag); // put again on the gateway's registry: fresh for its gc (transfer.ts)
          this.o.log(`image ${b.name}: ${registryHost}/${repo}:${tag} already pushed for this commit (${have.digest})`);
          return { pinned: `${registryHost}/${repo}@${have.digest}`, from: b.from, source: "build", name: b.name, platforms: have.platforms, uncompressedSizes: {}, layers: have.layers, reused: true };
        }
      }
      const localTag = `${registryHost}/${repo}:${tag}`;
      this.o.log(`image ${b.name}: docker build ${b.from}`);
      const context = await buildContext(b.dir, this.o.tmpDir, b.dockerfile);
      if (context.leftOut.length > 0) this.o.log(`image ${b.name}: ${leftOutText(context.leftOut)}, from its build context`);
      if (context.kept.length > 0) this.o.log(`image ${b.name}: kept ${context.kept.length === 1 ? "1 path" : `${context.kept.length} paths`} git ignores in its build context, as its .dockerignore names them with !: ${namedFew(context.kept, 5)}`);
      await dockerBuild(context.dir, localTag, {
        env: this.o.env,
        // The build's own output, as it comes: a long build is not silent, and CI keeps its log.
        onLine: (line) => {
          // Colours dropped, then any other control character (a RUN step may print anything).
          const text = printable(line.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "")).trimEnd();
          if (text.trim() && !LEGACY_BUILDER_NOTICE.test(text)) this.o.log(`image ${b.name}: | ${text}`);
        },
        ...(this.o.platform ? { platform: `${this.o.platform.os}/${this.o.platform.architecture}${this.o.platform.variant ? `/${this.o.platform.variant}` : ""}` } : {}),
        ...(b.dockerfile ? { dockerfile: b.dockerfile } : {}),
        ...(b.target ? { target: b.target } : {}),
        ...(b.buildArgs ? { buildArgs: b.buildArgs } : {}),
      }).finally(() => context.dispose());
      const r = await this.pushSaved(localTag, repo, tag, `${b.name.replaceAll("/", "_")}-build`, `image ${b.name}`);
      this.o.log(`image ${b.name}: ${dst.dryRun ? "would push" : "pushed"} ${registryHost}/${repo}:${tag} (${r.digest})`);
      return { pinned: `${registryHost}/${repo}@${r.digest}`, from: b.from, source: "build", name: b.name, platforms: r.platforms, uncompressedSizes: r.uncompressedSizes, layers: r.layers };
    });
  }

  /**
   * Pins an image reference: from the local engine if it holds it, else copied from its registry.
   *
   * @param writtenIn Where the `image:` was written: a name that is a folder there is said with
   *   why that folder was not built.
   * @throws {ImageNotFoundError} If neither has it, saying where publish looked.
   */
  image(written: string, ref: Reference, writtenIn?: ImageWrittenIn): Promise<ResolvedImage> {
    return this.once(`ref\0${formatReference(ref)}`, async () => {
      const { dst, registryHost, factory } = this.o;
      // Already in the factory registry (by any of its names): pin in place. Otherwise <factory>/<path without library/>.
      const inRegistry = ref.registry === registryHost || !!this.o.alsoHosts?.includes(ref.registry);
      const dstRepo = inRegistry ? ref.repository : `${factory}/${ref.repository.replace(/^library\//, "")}`;
      const name = ref.repository.replace(/^library\//, "");
      const from = formatReference(ref);
      let localWhy: string | undefined;
      if (!inRegistry) {
        const local = await dockerInspectImage(written, { env: this.o.env });
        if (!("missing" in local)) {
          const tag = ref.digest ? undefined : ref.tag;
          const r = await this.pushSaved(written, dstRepo, tag, `${name.replaceAll("/", "_")}-local`, `image ${written}`);
          const pinned = `${registryHost}/${dstRepo}@${r.digest}`;
          this.o.log(`image ${written}: from the local engine (${local.id.slice(0, 19)}), ${dst.dryRun ? "would push" : "pushed"} as ${pinned}`);
          return { pinned, from, source: "local", name, platforms: r.platforms, uncompressedSizes: r.uncompressedSizes, layers: r.layers };
        }
        localWhy = `${engineName(this.o.env)}: ${local.missing}`;
      }
      const mirror = this.o.mirrors[ref.registry];
      const src = this.o.clientFor(mirror ?? ref.registry);
      // Only the lookup decides "not found": a copy that fails later (a refused push) is a registry error.
      let why: string | undefined;
      try {
        if (!(await src.headManifest(ref.repository, referenceTarget(ref)))) why = `registry ${src.registry} answered 404: no manifest ${ref.repository}:${referenceTarget(ref)}`;
      } catch (cause) {
        why = (cause as Error).message.replace(/^Cannot /, "cannot ");
      }
      if (why !== undefined) {
        const looked = [...(localWhy ? [localWhy] : []), `${mirror ? `${ref.registry} through its mirror ${mirror}` : ref.registry}: ${why}`];
        const folder = writtenIn && unbuiltFolder(written, ref, factory, writtenIn);
        throw new ImageNotFoundError(`Cannot find image "${written}". Looked in ${looked.join("; and in ")}${folder ? `. ${folder}` : ""}`);
      }
      const c = await copyImage(src, ref.repository, referenceTarget(ref), dst, dstRepo, this.o.platform ? { platform: this.o.platform } : {});
      const pinned = `${registryHost}/${dstRepo}@${c.manifest.digest}`;
      this.o.log(`image ${from}: ${dst.dryRun ? "resolved" : "copied"} to ${pinned}`);
      return { pinned, from, source: "registry", name, platforms: c.platforms, uncompressedSizes: {}, layers: c.layers };
    });
  }

  /** `docker save` of a local image, pushed as `repo[:tag]`; returns its digest, platform and layer sizes. */
  private async pushSaved(localRef: string, repo: string, tag: string | undefined, file: string, label: string) {
    const { dst } = this.o;
    const tarPath = join(this.o.tmpDir, `${file}.tar`);
    this.o.log(`${label}: docker save${dst.dryRun ? "" : `, then push to ${this.o.registryHost}/${repo}`}`);
    await dockerSave(localRef, tarPath, { env: this.o.env });
    const img = await readDockerArchiveImage(tarPath, { tmpDir: this.o.tmpDir });
    try {
      await ensureBlobs(dst, repo, [img.manifest.config, ...img.manifest.layers], img.source);
      await ensureManifest(dst, repo, { bytes: img.manifestBytes, mediaType: img.manifest.mediaType!, digest: img.digest }, tag);
      const p = platformOfConfig(img.configBytes);
      return { digest: img.digest, platforms: p ? [p] : [], uncompressedSizes: img.uncompressedSizes, layers: img.manifest.layers.map((l) => l.digest) };
    } finally {
      await img.close();
    }
  }
}

/** The image already pushed under `tag` for this commit, if it is an image (not an app artifact). */
async function builtImageFor(
  client: RegistryClient,
  repo: string,
  tag: string,
): Promise<{ digest: string; manifest: FetchedManifest; platforms: Platform[]; layers: string[] } | undefined> {
  const head = await client.headManifest(repo, tag).catch(() => undefined);
  if (!head) return undefined;
  try {
    const m = await client.getManifest(repo, head.digest);
    const p = parseManifest(m.bytes, m.mediaType);
    if (p.kind === "manifest" && p.manifest.artifactType === undefined && !p.manifest.config.mediaType.includes("empty")) {
      const platform = platformOfConfig(await client.getBlobBytes(repo, p.manifest.config.digest, { maxBytes: 4 * 1024 * 1024 }));
      return { digest: m.digest, manifest: m, platforms: platform ? [platform] : [], layers: p.manifest.layers.map((l) => l.digest) };
    }
  } catch {
    // unreadable: rebuild
  }
  return undefined;
}
