/**
 * Container images for tests on a machine with no Internet: a busybox-static root filesystem
 * plus the test's own files, written WITHOUT dockerd either as a `docker save` tar (for
 * `docker load` / `POST /images/load`) or as an OCI image layout (for skopeo, registries and
 * lib/oci). Output is deterministic: the same options give the same digests, byte for byte.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { pack as tarPack } from "tar-stream";
import { tempDir } from "./tmp.ts";

/** A file in the image: its content, or content plus mode (default 0755 for `#!` scripts, else 0644). */
export type ImageFile = string | Uint8Array | { content: string | Uint8Array; mode?: number } | { symlink: string };

export interface BusyboxImageOptions {
  /** Files added to the busybox layer: absolute or relative paths inside the image. */
  files?: Record<string, ImageFile>;
  /** Further layers on top, each a set of files (later layers win). */
  layers?: Record<string, ImageFile>[];
  /**
   * gzip level of the `layers` on top (default 6). 1 packs tens of MB 3-5x faster, for tests
   * whose big layers' compression is not what they check. The busybox base layer (busybox
   * plus `files`) is always level 6, whatever this says: images with the same `files` (e.g.
   * none) share its digest, with or without `gzipLevel`.
   */
  gzipLevel?: number;
  cmd?: string[];
  entrypoint?: string[];
  env?: string[];
  /** e.g. ["80/tcp"] */
  exposedPorts?: string[];
  workingDir?: string;
  labels?: Record<string, string>;
  /**
   * The image's StopSignal. Default "SIGKILL": busybox as PID 1 ignores SIGTERM, so `docker
   * stop` / `docker-compose down` would wait 10 s per container. Pass null to leave it unset
   * (SIGTERM; give the container a shell `trap` if a test checks graceful stops).
   */
  stopSignal?: string | null;
  /** "linux/amd64" (default), "linux/arm64", "linux/arm/v7"... Only the config says so: the busybox binary is the host's. */
  platform?: string;
  /** The name:tag recorded in the tar's RepoTags / the OCI layout's ref annotation. Default "test/busybox:latest". */
  tag?: string;
  /** Where busyboxImageTar writes; default a new temp dir's image.tar. */
  out?: string;
}

export interface BuiltLayer {
  /** Uncompressed tar. */
  tar: Uint8Array;
  /** sha256 of the uncompressed tar (config rootfs.diff_ids). */
  diffId: string;
  /** Gzipped tar (OCI layout layers). */
  gz: Uint8Array;
  /** sha256 of the gzipped tar (manifest layer digest). */
  digest: string;
}

export interface BuiltImage {
  config: Uint8Array;
  /** sha256 of the config JSON = the image ID docker reports. */
  configDigest: string;
  layers: BuiltLayer[];
  /** OCI image manifest JSON (gzipped layers). */
  manifest: Uint8Array;
  manifestDigest: string;
  platform: { os: string; architecture: string; variant?: string };
  tag: string;
}

const BUSYBOX_PATH = "/bin/busybox";
const APPLETS = [
  "sh", "ash", "httpd", "sleep", "cat", "echo", "ls", "wget", "nc", "mkdir", "rm", "cp", "mv", "env", "true",
  "false", "test", "[", "ps", "kill", "date", "sed", "grep", "head", "tail", "touch", "id", "hostname", "printf",
  "wc", "tr", "cut", "sort", "uname", "ln", "chmod", "pwd", "df", "du", "find", "xargs", "awk", "sha256sum",
  "md5sum", "stat", "seq", "yes", "timeout", "tee", "vi", "nslookup", "ping", "ifconfig", "ip", "mount",
  "umount", "init", "tar", "gzip", "gunzip", "base64", "dd", "expr", "basename", "dirname", "readlink",
  "realpath", "which", "whoami", "usleep", "watch", "pidof", "killall", "nohup", "netstat",
];

let busyboxBytes: Uint8Array | undefined;
function busybox(): Uint8Array {
  if (!busyboxBytes) {
    try {
      busyboxBytes = readFileSync(BUSYBOX_PATH);
    } catch (err) {
      throw new Error(`Cannot read ${BUSYBOX_PATH}: install the busybox-static package`, { cause: err });
    }
  }
  return busyboxBytes;
}

const sha256 = (data: Uint8Array | string) => `sha256:${createHash("sha256").update(data).digest("hex")}`;
const hex = (digest: string) => digest.slice("sha256:".length);
const enc = (s: string) => new TextEncoder().encode(s);

interface Entry {
  name: string;
  type: "file" | "directory" | "symlink";
  mode: number;
  content?: Uint8Array;
  linkname?: string;
}

function normalise(path: string): string {
  const clean = path.replace(/^\/+/, "").replace(/\/+$/, "");
  if (!clean || clean.split("/").some((p) => p === ".." || p === "." || p === "")) {
    throw new Error(`Cannot add image file "${path}": not a clean path inside the image`);
  }
  return clean;
}

function entriesFor(files: Record<string, ImageFile>, base: Entry[] = []): Entry[] {
  const byName = new Map<string, Entry>(base.map((e) => [e.name, e]));
  const addDirs = (name: string) => {
    const parts = name.split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      if (!byName.has(dir)) byName.set(dir, { name: dir, type: "directory", mode: 0o755 });
    }
  };
  for (const [path, spec] of Object.entries(files)) {
    const name = normalise(path);
    addDirs(name);
    if (typeof spec === "object" && "symlink" in spec) {
      byName.set(name, { name, type: "symlink", mode: 0o777, linkname: spec.symlink });
      continue;
    }
    const raw = typeof spec === "string" || spec instanceof Uint8Array ? spec : spec.content;
    const content = typeof raw === "string" ? enc(raw) : raw;
    const explicit = typeof spec === "object" && !(spec instanceof Uint8Array) ? spec.mode : undefined;
    const script = content[0] === 0x23 && content[1] === 0x21; // "#!"
    byName.set(name, { name, type: "file", mode: explicit ?? (script ? 0o755 : 0o644), content });
  }
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function busyboxBase(): Entry[] {
  const entries: Entry[] = [
    { name: "bin", type: "directory", mode: 0o755 },
    { name: "bin/busybox", type: "file", mode: 0o755, content: busybox() },
    { name: "etc", type: "directory", mode: 0o755 },
    { name: "etc/passwd", type: "file", mode: 0o644, content: enc("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n") },
    { name: "etc/group", type: "file", mode: 0o644, content: enc("root:x:0:\nnogroup:x:65534:\n") },
    { name: "root", type: "directory", mode: 0o700 },
    { name: "tmp", type: "directory", mode: 0o1777 },
    { name: "usr", type: "directory", mode: 0o755 },
    { name: "usr/bin", type: "directory", mode: 0o755 },
    { name: "var", type: "directory", mode: 0o755 },
    { name: "var/www", type: "directory", mode: 0o755 },
  ];
  for (const applet of APPLETS) entries.push({ name: `bin/${applet}`, type: "symlink", mode: 0o777, linkname: "busybox" });
  return entries;
}

async function tarOf(entries: Entry[]): Promise<Uint8Array> {
  const pack = tarPack();
  const chunks: Uint8Array[] = [];
  const collected = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Uint8Array);
  })();
  for (const e of entries) {
    const header = {
      name: e.type === "directory" ? `${e.name}/` : e.name,
      mode: e.mode,
      uid: 0,
      gid: 0,
      uname: "",
      gname: "",
      mtime: new Date(0),
      type: e.type,
      linkname: e.linkname,
    };
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (e.type === "file") pack.entry({ ...header, size: e.content!.length }, Buffer.from(e.content!), cb);
      else pack.entry(header, cb);
    });
  }
  pack.finalize();
  await collected;
  return new Uint8Array(Buffer.concat(chunks));
}

function parsePlatform(p = "linux/amd64"): { os: string; architecture: string; variant?: string } {
  const [os, architecture, variant] = p.split("/");
  if (!os || !architecture) throw new Error(`Cannot build image for platform "${p}": expected os/arch[/variant]`);
  return variant ? { os, architecture, variant } : { os, architecture };
}

async function layerOf(entries: Entry[], level = 6): Promise<BuiltLayer> {
  const tar = await tarOf(entries);
  // level and no filename/mtime in the header: gzip output depends only on the input bytes.
  const gz = new Uint8Array(gzipSync(tar, { level }));
  return { tar, diffId: sha256(tar), gz, digest: sha256(gz) };
}

/**
 * Builds the busybox image in memory: layers, config, OCI manifest and their digests.
 *
 * @example
 * ```ts
 * const img = await buildBusyboxImage({ files: { "/var/www/index.html": "hi" }, cmd: ["httpd", "-f", "-h", "/var/www"] });
 * img.configDigest; // the image ID docker will report after loading it
 * ```
 */
export async function buildBusyboxImage(opts: BusyboxImageOptions = {}): Promise<BuiltImage> {
  const platform = parsePlatform(opts.platform);
  const layers = [await layerOf(entriesFor(opts.files ?? {}, busyboxBase()))];
  for (const extra of opts.layers ?? []) layers.push(await layerOf(entriesFor(extra), opts.gzipLevel));
  const containerConfig: Record<string, unknown> = {
    Env: opts.env ?? ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    Cmd: opts.cmd ?? ["sh"],
  };
  if (opts.entrypoint) containerConfig.Entrypoint = opts.entrypoint;
  if (opts.workingDir) containerConfig.WorkingDir = opts.workingDir;
  if (opts.labels) containerConfig.Labels = opts.labels;
  const stopSignal = opts.stopSignal === undefined ? "SIGKILL" : opts.stopSignal;
  if (stopSignal) containerConfig.StopSignal = stopSignal;
  if (opts.exposedPorts?.length) {
    containerConfig.ExposedPorts = Object.fromEntries(
      opts.exposedPorts.map((p) => [p.includes("/") ? p : `${p}/tcp`, {}]),
    );
  }
  const configJson = {
    architecture: platform.architecture,
    ...(platform.variant ? { variant: platform.variant } : {}),
    os: platform.os,
    created: "1970-01-01T00:00:00Z",
    config: containerConfig,
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((_, i) => ({ created: "1970-01-01T00:00:00Z", created_by: `test harness layer ${i}` })),
  };
  const config = enc(JSON.stringify(configJson));
  const configDigest = sha256(config);
  const manifest = enc(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: configDigest, size: config.length },
      layers: layers.map((l) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: l.digest, size: l.gz.length })),
    }),
  );
  return {
    config,
    configDigest,
    layers,
    manifest,
    manifestDigest: sha256(manifest),
    platform,
    tag: opts.tag ?? "test/busybox:latest",
  };
}

/** Serialises a built image as a `docker save` tar (legacy manifest.json + repositories, uncompressed layers). */
export async function dockerSaveTar(img: BuiltImage): Promise<Uint8Array> {
  const entries: Entry[] = [];
  const layerPaths: string[] = [];
  for (const l of img.layers) {
    const dir = hex(l.diffId);
    entries.push({ name: dir, type: "directory", mode: 0o755 });
    entries.push({ name: `${dir}/VERSION`, type: "file", mode: 0o644, content: enc("1.0") });
    entries.push({ name: `${dir}/layer.tar`, type: "file", mode: 0o644, content: l.tar });
    layerPaths.push(`${dir}/layer.tar`);
  }
  const configName = `${hex(img.configDigest)}.json`;
  entries.push({ name: configName, type: "file", mode: 0o644, content: img.config });
  entries.push({
    name: "manifest.json",
    type: "file",
    mode: 0o644,
    content: enc(JSON.stringify([{ Config: configName, RepoTags: [img.tag], Layers: layerPaths }])),
  });
  const colon = img.tag.lastIndexOf(":");
  const slash = img.tag.lastIndexOf("/");
  const [repo, tag] = colon > slash ? [img.tag.slice(0, colon), img.tag.slice(colon + 1)] : [img.tag, "latest"];
  const top = hex(img.layers[img.layers.length - 1]!.diffId);
  entries.push({ name: "repositories", type: "file", mode: 0o644, content: enc(JSON.stringify({ [repo]: { [tag]: top } })) });
  return await tarOf(entries);
}

/**
 * Writes a busybox-based image as a `docker save` tar and returns its path (load it with
 * `docker load -i PATH`; the image ID equals `buildBusyboxImage(opts).configDigest`).
 *
 * @example
 * ```ts
 * const tar = await busyboxImageTar({ files: { "/var/www/index.html": "hello" }, cmd: ["httpd", "-f", "-p", "80", "-h", "/var/www"] });
 * ```
 */
export async function busyboxImageTar(opts: BusyboxImageOptions = {}): Promise<string> {
  const img = await buildBusyboxImage(opts);
  const out = opts.out ?? join(await tempDir("image-"), "image.tar");
  writeFileSync(out, await dockerSaveTar(img));
  return out;
}

export interface OciLayoutResult {
  /** Digest index.json points at: the manifest, or the image index with `platforms`. */
  digest: string;
  mediaType: string;
  size: number;
  /** One per platform. */
  images: BuiltImage[];
}

/**
 * Writes a busybox-based image as an OCI image layout in `dir` (created if missing; blobs are
 * added, index.json is rewritten). With `platforms`, writes one image per platform under an
 * image index (for platform-selection tests). Copy it with
 * `skopeo copy oci:DIR:TAG docker://HOST/REPO:TAG`.
 */
export async function writeOciLayout(
  dir: string,
  opts: BusyboxImageOptions & { platforms?: string[] } = {},
): Promise<OciLayoutResult> {
  mkdirSync(join(dir, "blobs", "sha256"), { recursive: true });
  const put = (digest: string, data: Uint8Array) => writeFileSync(join(dir, "blobs", "sha256", hex(digest)), data);
  const platforms = opts.platforms ?? [opts.platform ?? "linux/amd64"];
  const images: BuiltImage[] = [];
  for (const platform of platforms) {
    const img = await buildBusyboxImage({ ...opts, platform });
    for (const l of img.layers) put(l.digest, l.gz);
    put(img.configDigest, img.config);
    put(img.manifestDigest, img.manifest);
    images.push(img);
  }
  const tag = opts.tag ?? "test/busybox:latest";
  const refName = tag.slice(tag.lastIndexOf(":") > tag.lastIndexOf("/") ? tag.lastIndexOf(":") + 1 : tag.length) || "latest";
  let top: { mediaType: string; digest: string; size: number; platform?: object };
  if (opts.platforms) {
    const index = enc(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: images.map((img) => ({
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          digest: img.manifestDigest,
          size: img.manifest.length,
          platform: img.platform,
        })),
      }),
    );
    const digest = sha256(index);
    put(digest, index);
    top = { mediaType: "application/vnd.oci.image.index.v1+json", digest, size: index.length };
  } else {
    const img = images[0]!;
    top = { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: img.manifestDigest, size: img.manifest.length };
  }
  writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  writeFileSync(
    join(dir, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [{ ...top, annotations: { "org.opencontainers.image.ref.name": refName } }],
    }),
  );
  return { digest: top.digest, mediaType: top.mediaType, size: top.size, images };
}
