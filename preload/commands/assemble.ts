/** `preload`: assemble a system image with compose apps baked in (layout: lib/device; exit codes: preload/exit-codes.ts). */
import { X509Certificate } from "node:crypto";
import { rmSync } from "node:fs";
import { lstat, mkdir, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { acquireLock, lockFilePid, lockHolder } from "../../lib/fs/pid-lock.ts";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { HardwareId, Tag, TargetVersion } from "../../lib/api/target.ts";
import { defineCommand, describeError, UsageError, type FlagSpec, type FlagValues, type Output } from "../../lib/cli/command.ts";
import { readFlagFile } from "../../lib/cli/flag-file.ts";
import { checkFlagValues, checkGatewayUrl, checkRegistryHosts } from "../../lib/cli/flag-values.ts";
import { whyCannotRead } from "../../lib/fs/paths.ts";
import { platformForHwid } from "../../lib/oci/hwid-platform.ts";
import { formatPlatform, parsePlatform, type Platform } from "../../lib/oci/platform.ts";
import { fetchPinnedCa, InvalidTokenError, parsePinnedToken } from "../../lib/tls/pin.ts";
import { parseMetadata } from "../../lib/tuf/metadata.ts";
import { fromPem } from "../../lib/x509/pem.ts";
import { selectTarget } from "../../lib/tuf/select-target.ts";
import { DEFAULT_DEVICE_PATHS } from "../../lib/device/paths.ts";
import { assemble } from "../assemble.ts";
import { decidePreload, platformsOf, readFactoryConfig, type BuildKind } from "../../lib/factory-config/index.ts";
import { checkExt4Size, checkOutputPath, checkRoom, ImageNoSpaceError, imageNeeds, OutputError, partialPath, whyCannotWriteAt, writeOutput, type OutputFormat } from "../output.ts";
import { parseSize } from "../../lib/cli/size.ts";
import { isNoSpace } from "../../lib/fs/why.ts";
import { unpackBase } from "../base.ts";
import { explainTlsFailure, RegistryAccess } from "../registries.ts";
import { NoTargetError, targetsFromBundle, targetsFromFiles, targetsFromGateway, whatTargetsHold, type RootFile } from "../targets.ts";
import { bundleRegistries, openBundle, type Bundle } from "../../lib/bundle/index.ts";
import { sizeText } from "../../lib/cli/bytes.ts";
import { exitOnSignal } from "../../lib/cli/interrupt.ts";
import { progressLine } from "../../lib/cli/progress.ts";

const FORMATS = ["dir", "tar", "ext4"] as const;

const FLAGS = {
  "factory-config": { type: "string", description: "factory-config.yml of the factory", placeholder: "FILE" },
  ref: { type: "string", description: "Git ref of the containers build, e.g. refs/heads/master", placeholder: "REF" },
  kind: { type: "string", description: "Build kind whose rules apply: containers or lmp", default: "containers", placeholder: "KIND" },
  server: { type: "string", description: "Gateway URL to read targets and blobs from", placeholder: "URL" },
  token: { type: "string", description: "Gateway API token: viewer (read-only, enough), publish or admin (or env PRELOAD_TOKEN)", placeholder: "TOKEN" },
  targets: { type: "string", description: "A signed targets.json to use instead of the gateway", placeholder: "FILE" },
  bundle: { type: "string", description: "An offline bundle (gateway export, without --from) to take the target and blobs from; needs --root", placeholder: "DIR" },
  root: { type: "string", description: "Trusted root.json (required with --targets and --bundle)", placeholder: "FILE" },
  target: { type: "string", description: "Target version to preload (default: the latest for the tag)", placeholder: "VERSION" },
  tag: { type: "string", description: "Target tag (default: the first tag the ref maps to)", placeholder: "TAG" },
  hwid: { type: "string", description: "Hardware id of the device", default: "x86_64-linux", placeholder: "HWID" },
  platform: { type: "string", description: "Image platform, e.g. linux/arm64 (default: from --hwid)", placeholder: "OS/ARCH" },
  out: { type: "string", description: "Where to write the image (replaces only an earlier preload image, or an empty file or directory)", placeholder: "PATH" },
  format: { type: "string", description: "Output: dir, tar or ext4", default: "dir", placeholder: "FORMAT" },
  size: { type: "string", description: "Size of the ext4 image, to match its partition: 512M, 2G or bytes, binary units (default: the content plus 20%, at least 64 MiB); ext4 only", placeholder: "SIZE" },
  base: { type: "string", description: "Base root filesystem to layer onto (directory or tar)", placeholder: "ROOTFS" },
  cache: { type: "string", description: "Blob cache reused across runs", placeholder: "DIR" },
  fioup: { type: "string", description: "fioup binary to install as /usr/bin/fioup, built for the image's architecture (checked); required with a --base that has no /usr/bin/fioup", placeholder: "FILE" },
  "registry-token": { type: "string", description: "Token for the target's registries when there is no --server (default --token; or env PRELOAD_REGISTRY_TOKEN)", placeholder: "TOKEN" },
  ca: { type: "string", description: "CA certificate (PEM) to trust for the target's registries and their token realms other than the --server gateway (trusted through the token's pin); for a realm at the gateway under another name, the factory CA", placeholder: "FILE" },
  "insecure-registry": { type: "strings", description: "Registry host:port to reach over plain HTTP (what it serves is still checked against the signed digests)", placeholder: "HOST" },
  explain: { type: "boolean", description: "Print the preload decision and where it came from, then exit (needs no --out nor source)" },
  json: { type: "boolean", description: "Print the result, or the error ({error, code, exitCode}), as JSON on stdout (bad usage, exit 2, is said on stderr only)" },
} as const satisfies Record<string, FlagSpec>;

export default defineCommand({
  summary: "Assemble a system image with compose apps preloaded",
  description: [
    "Decides which apps to preload from factory-config.yml and the git ref, picks the target for",
    "the ref's tag and the hardware id, verifies it against the TUF root, and writes a root",
    "filesystem holding the apps' blobs in fioup's store, the preloaded target, the TUF root,",
    "fioup config defaults and the early-start systemd service.",
    "",
    "Targets come from the gateway (--server and --token: the token's CA pin secures TLS), from",
    "files (--targets targets.json --root root.json), or with their blobs from an offline bundle",
    "(--bundle DIR --root root.json; a bundle made by `gateway export` without --from). With",
    "ASSEMBLE_SYSTEM_IMAGE: \"0\" for the ref, it says so and exits 0 without writing an image; the",
    "flags are checked first, so a bad one fails on every ref (exit 2).",
    "Without --server or --bundle, blobs come from the registries the target names, with",
    "--registry-token (default --token) and --ca; a token",
    "with a CA pin makes --ca unnecessary for the gateway's registry. With --server, a registry whose",
    "token realm is the gateway (at the --server address) gets the --token there, over the pinned CA.",
    "",
    "--format ext4 --size SIZE makes the image exactly SIZE bytes, to be written onto a partition of",
    "that size; content that does not fit is refused before the blobs are fetched, saying the --size it needs.",
  ].join("\n"),
  flags: FLAGS,
  run: ({ flags, out }) => withJsonError(flags.json, () => run(flags, out)),
});

/**
 * With --json, an error is also a JSON object on stdout (`{error, code, exitCode}`), as the shared
 * CLI prints it for commands with `--format json` (preload's --format is the image's): a CI step
 * reading stdout gets its answer either way. Bad usage stays text only, as there.
 */
async function withJsonError(json: boolean, run: () => Promise<number | void>): Promise<number | void> {
  try {
    return await run();
  } catch (err) {
    if (json && !(err instanceof UsageError)) {
      // Loaded here: the exit-code table imports this module.
      const { exitCodeFor } = await import("../exit-codes.ts");
      console.log(JSON.stringify({ error: describeError(err), code: (err as Error)?.name ?? "Error", exitCode: exitCodeFor(err) }));
    }
    throw err;
  }
}

/** The command: check the flags, decide from the config, verify the target, write the image. */
async function run(flags: FlagValues<typeof FLAGS>, out: Output): Promise<number | void> {
  if (!flags["factory-config"]) throw new UsageError("--factory-config is required");
  if (!flags.ref) throw new UsageError("--ref is required");
  if (flags.kind !== "containers" && flags.kind !== "lmp") throw new UsageError("--kind must be containers or lmp");
  const token = flags.token ?? process.env.PRELOAD_TOKEN;
  // Every flag is checked before the config decides: a CI line with a typo must fail on every
  // ref, not pass green on the refs that build no image and break on the first one that does.
  const checked = await checkFlags(flags, token);
  const config = await readFactoryConfig(flags["factory-config"], { warn: (line) => out.info(`warning: ${line}`) });
  const decision = decidePreload(config, flags.ref, flags.kind as BuildKind);
  const print = (data: object, text: string) => (flags.json ? console.log(JSON.stringify(data, null, 2)) : console.log(text));
  if (flags.explain || !decision.assemble) {
    const what = decision.assemble
      ? `preload ${decision.apps ? decision.apps.join(", ") : "all apps of the target"} (tags: ${decision.tags.join(", ")})`
      : `no system image for ${flags.ref}`;
    print({ ...decision, ref: flags.ref }, [`${flags.ref}: ${what}`, ...decision.reasons.map((r) => `  - ${r}`)].join("\n"));
    return 0;
  }

  await checkOutputPath(resolve(flags.out!), flags.format as OutputFormat);
  const size = checked.size;
  const { byHwid, built } = platformsOf(config.containers);
  // A factory that builds for one architecture runs it on every device.
  const platform = checked.platform ?? platformForHwid(flags.hwid, byHwid) ?? (built.length === 1 ? built[0] : undefined) ?? { os: "linux", architecture: "amd64" };
  if (flags.fioup) await checkFioupArch(flags.fioup, platform, checked.platform ? "--platform" : `--hwid ${flags.hwid}`);
  const bundle = checked.bundle;

  const ca = flags.server && token ? await fetchPinnedCa(flags.server, token) : undefined;
  const source = flags.bundle ? `the bundle ${flags.bundle}` : (flags.targets ?? `${flags.server}/repo/`);
  out.info(`verifying the targets of ${source} against the TUF root ${flags.root ?? `${flags.server}/repo/1.root.json`}`);
  const verified = bundle
    ? await targetsFromBundle(bundle, checked.root!)
    : flags.targets
      ? await targetsFromFiles(flags.targets, checked.root!)
      : await targetsFromGateway(flags.server!, token!, ca!, checked.root);
  const tag = flags.tag ?? decision.tags[0]!;
  // A bundle holds the blobs of one target: that version, unless another is named (and then refused below).
  const target = selectTarget(verified.targets, { hwid: flags.hwid, tags: [tag], version: flags.target ?? bundle?.index.bundle.version });
  if (!target) {
    throw new NoTargetError(
      `No target for hardware id ${flags.hwid} and tag ${tag}${flags.target ? ` with version ${flags.target}` : ""} in ${verified.source}: ${whatTargetsHold(verified.targets, { hwid: flags.hwid, tag })}`,
    );
  }
  if (bundle && target.name !== bundle.index.bundle.target) {
    throw new NoTargetError(`The bundle ${bundle.dir} holds ${bundle.index.bundle.target}, not ${target.name}`);
  }

  const access = new RegistryAccess({
    ...(flags.server && token && ca ? { gateway: { host: new URL(flags.server).host, token, ca } } : {}),
    token: flags["registry-token"] ?? process.env.PRELOAD_REGISTRY_TOKEN ?? token,
    ...(checked.ca !== undefined ? { ca: checked.ca } : {}),
    insecure: new Set(flags["insecure-registry"]),
  });
  await access.prepare(Object.values(target.entry.custom.docker_compose_apps ?? {}).map((a) => a.uri));

  const outPath = resolve(flags.out!);
  await mkdir(dirname(outPath), { recursive: true });
  for (const line of await removeStaleWork(dirname(outPath))) out.info(line);
  const work = await mkdtemp(join(dirname(outPath), WORK_PREFIX));
  acquireLock(join(work, OWNER_FILE));
  const cacheDir = flags.cache ? resolve(flags.cache) : join(work, "cache");
  const tree = join(work, "rootfs");
  // Ctrl-C or SIGTERM ends the process without running the `finally` below: remove the
  // unfinished image the same way here (synchronously, nothing runs after it), so nothing half
  // written is left beside --out looking like an image, and --out can be given again at once.
  const progress = progressLine((line) => out.info(line));
  const releaseSignals = exitOnSignal("preload", () => {
    progress.clear();
    rmSync(work, { recursive: true, force: true });
    rmSync(partialPath(outPath), { force: true });
    return `removed the unfinished image, ${outPath} is as it was`;
  });
  // A dir image outlives the run: it must not share blob files with a kept cache.
  const linkFromCache = flags.format !== "dir" || !flags.cache;
  try {
    await mkdir(tree, { recursive: true });
    if (flags.base) {
      await progress.during(`layering onto base ${flags.base}`, () => unpackBase(flags.base!, tree));
    }
    if (!flags.fioup) {
      const why = "the image's early-start service runs /usr/bin/fioup at first boot";
      const give = `give --fioup FILE, the fioup built for ${formatPlatform(platform)}`;
      // A base is the whole OS: without fioup in it the image cannot start its apps. Without a
      // base the tree may be laid onto an OS built elsewhere that installs fioup: said, not refused.
      if (flags.base && !(await lstat(join(tree, "usr/bin/fioup")).catch(() => undefined))) {
        throw new UsageError(`The image would hold no fioup: --base ${flags.base} has no /usr/bin/fioup and no --fioup is given, but ${why} ("exec: /usr/bin/fioup: not found"); ${give}`);
      }
      if (!flags.base) out.info(`warning: the image holds no /usr/bin/fioup (no --fioup, no --base): ${why}, and fails there unless the OS this tree is laid onto installs fioup; ${give}`);
    }
    const result = await assemble({
      target,
      apps: decision.apps,
      rootJson: verified.rootJson,
      registry: bundle ? bundleRegistries(bundle) : (host) => access.client(host),
      tree,
      cacheDir,
      paths: DEFAULT_DEVICE_PATHS,
      platform,
      fioupBinary: flags.fioup,
      linkFromCache,
      // The blobs are known: what does not fit (where the image goes, or in an ext4 --size) is
      // refused before they are fetched, and before an earlier image at --out is touched.
      beforeFetch: async (blobs: number[], toFetch: number) => {
        const files = flags.fioup ? [(await stat(flags.fioup)).size] : [];
        if (size !== undefined) await checkExt4Size(tree, size, join(work, "ext4-probe"), [...blobs, ...files]);
        await checkRoom(await imageNeeds({ tree, out: outPath, format: flags.format as OutputFormat, blobs, toFetch, cacheDir, copied: !linkFromCache, files }));
      },
      onProgress: (l) => progress.print(l),
      onFetching: (l) => progress.show(l),
    })
      .catch((err: unknown) => {
        throw explainTlsFailure(err, { ca: checked.ca !== undefined, token: token !== undefined, server: flags.server !== undefined }) ?? err;
      })
      .finally(() => progress.clear());
    await progress.during(`writing ${flags.format} output to ${outPath}`, () => writeOutput(tree, outPath, flags.format as OutputFormat, { size }));
    print(
      { ...result, out: outPath, format: flags.format, ref: flags.ref, tag },
      `preloaded ${result.apps.join(", ")} of ${result.target} into ${outPath} (${flags.format}): ${result.blobs} blobs, ${sizeText(result.bytes)}, ${sizeText(result.fetched)} fetched${result.resumed ? ` (and ${sizeText(result.resumed)} resumed from an earlier run)` : ""}`,
    );
  } catch (err) {
    if (!isNoSpace(err) && !(err instanceof ImageNoSpaceError)) throw err;
    const sizes = err instanceof ImageNoSpaceError ? ` (${err.detail})` : "";
    const beside = [
      "the image's tree",
      ...(flags.cache ? [] : ["the blob cache (--cache DIR puts it elsewhere)"]),
      ...(flags.format === "dir" ? [] : [`the ${flags.format} file`]),
    ];
    // The file system that is full: the one beside --out, unless the error names another (a mounted --out, the --cache).
    const where = (err instanceof ImageNoSpaceError && err.o.where) || dirname(outPath);
    const left = (err instanceof ImageNoSpaceError && err.o.left) || `the unfinished image was removed, ${outPath} is as it was`;
    throw new OutputError(
      `No space left to write the image at ${outPath}${flags.cache ? ` or the cache ${flags.cache}` : ""}${sizes}: preload writes ${beside.join(", ")} in ${dirname(outPath)}${flags.format === "dir" && where === outPath ? `, then the image into ${outPath}` : ""}; free some space in ${where} or give an --out on a larger file system (${left})`,
    );
  } finally {
    releaseSignals();
    await rm(work, { recursive: true, force: true });
    await rm(partialPath(outPath), { force: true });
  }
}

/** The work folder beside --out, and the file in it naming the preload that owns it. */
const WORK_PREFIX = ".preload-";
const OWNER_FILE = "owner.lock";

/**
 * Removes the work folders beside --out whose preload is gone (SIGKILL, a power cut: nothing ran
 * to remove them), each said in a line: they hold a whole unfinished image. A folder whose owner
 * runs (another preload into the same folder) is left alone, as is one without an owner file.
 */
async function removeStaleWork(dir: string): Promise<string[]> {
  const lines: string[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith(WORK_PREFIX)) continue;
    const owner = join(dir, name, OWNER_FILE);
    const pid = lockFilePid(owner);
    if (pid === undefined || lockHolder(owner) !== undefined) continue;
    const path = join(dir, name);
    const gone = await rm(path, { recursive: true, force: true, maxRetries: 3 }).then(() => true, () => false);
    lines.push(gone
      ? `removed ${path}: the unfinished work of an earlier preload (pid ${pid}) that was killed`
      : `warning: cannot remove ${path}, the unfinished work of an earlier preload (pid ${pid}) that was killed: a tool it ran may still write there (remove it once that ends)`);
  }
  return lines;
}

/** What {@link checkFlags} read and parsed, for the run to use as checked. */
interface CheckedFlags {
  root?: RootFile;
  /** --bundle, opened: a folder that is no complete bundle is refused on every ref. */
  bundle?: Bundle;
  platform?: Platform;
  ca?: string;
  /** --size, in bytes (ext4 only). */
  size?: number;
}

/**
 * Checks every flag's value, and every file a flag names, before the factory config is read:
 * a bad one is bad usage (exit 2) naming the flag, whatever the ref's rules decide. Without
 * --explain, the flags an image needs (--out and a source of targets) must be given too.
 *
 * @throws {UsageError} Naming the flag, and the path for a file.
 */
async function checkFlags(flags: FlagValues<typeof FLAGS>, token: string | undefined): Promise<CheckedFlags> {
  if (!(FORMATS as readonly string[]).includes(flags.format)) throw new UsageError(`--format must be one of ${FORMATS.join(", ")}, got "${flags.format}"`);
  let size: number | undefined;
  if (flags.size !== undefined) {
    if (flags.format !== "ext4") throw new UsageError(`--size only applies to --format ext4 (a ${flags.format} image has no fixed size)`);
    size = parseSize(flags.size);
    if (!size) throw new UsageError(`--size takes a size such as 512M, 2G or a number of bytes (binary units: 512M is 512 MiB), not "${flags.size}"`);
  }
  // The rules fioup register holds a device to: a value no target can carry only ever finds no target.
  checkFlagValues("--hwid", HardwareId, [flags.hwid]);
  checkFlagValues("--tag", Tag, flags.tag === undefined ? [] : [flags.tag]);
  checkFlagValues("--target", TargetVersion, flags.target === undefined ? [] : [flags.target]);
  let platform: Platform | undefined;
  if (flags.platform !== undefined) {
    try {
      platform = parsePlatform(flags.platform);
    } catch (e) {
      throw new UsageError(`--platform: ${(e as Error).message}`);
    }
  }
  checkRegistryHosts("--insecure-registry", flags["insecure-registry"]);
  if (flags.server !== undefined) checkGatewayUrl("--server", flags.server);
  if (flags.server && token) {
    try {
      parsePinnedToken(token);
    } catch (e) {
      if (e instanceof InvalidTokenError) throw new UsageError("--token (or PRELOAD_TOKEN) is not <secret>.<sha256 of the gateway CA>");
      throw e;
    }
  }
  if (flags.targets && !flags.root) throw new UsageError("--targets needs --root (the trusted root.json)");
  if (flags.bundle && !flags.root) throw new UsageError("--bundle needs --root (the trusted root.json: a bundle cannot vouch for itself)");
  if (flags.targets && flags.bundle) throw new UsageError("give --targets or --bundle, not both");
  if (!flags.explain) {
    if (!flags.out) throw new UsageError("--out is required");
    if (!flags.targets && !flags.bundle && !(flags.server && token)) throw new UsageError("give --server and --token, --targets and --root, or --bundle and --root");
  }
  // Not there is bad usage like any missing file a flag names; there but invalid is exit 10.
  await checkPath("--factory-config", flags["factory-config"]!, "file");
  if (flags.targets) await checkPath("--targets", flags.targets, "file");
  if (flags.bundle) await checkPath("--bundle", flags.bundle, "directory");
  if (flags.base) await checkPath("--base", flags.base);
  if (flags.fioup) await checkPath("--fioup", flags.fioup, "file");
  if (flags.out) {
    const why = await whyCannotWriteAt(resolve(flags.out));
    if (why) throw new UsageError(`Cannot write --out ${flags.out}: ${why}`);
  }
  return {
    root: flags.root === undefined ? undefined : await readRoot(flags.root),
    platform,
    size,
    ca: flags.ca === undefined ? undefined : await readCa(flags.ca),
    bundle: flags.bundle === undefined ? undefined : await openBundle(resolve(flags.bundle)),
  };
}

/** A path a flag names must be there and readable, and a file or a directory as the flag takes. */
async function checkPath(flag: string, path: string, kind?: "file" | "directory"): Promise<void> {
  const why = await whyCannotRead(path, kind);
  if (why) throw new UsageError(`Cannot read ${flag} ${path}: ${why}`);
}

/** ELF e_machine values of the architectures a device runs, as OCI names them. */
const ELF_MACHINES: Record<number, string> = { 0x3e: "amd64", 0xb7: "arm64", 0x28: "arm", 0x03: "386", 0xf3: "riscv64" };
/** The architectures scripts/build.ts builds fioup for, by the name in its file name. */
const DIST_NAME: Record<string, string> = { amd64: "x64", arm64: "arm64" };

/**
 * The --fioup binary must run on the image's platform: an x86-64 fioup in an arm64 image fails
 * only at the device's first boot (the early-start service: "Exec format error"). A file that is
 * no ELF binary (a wrapper script) or of an architecture this table does not know is taken.
 *
 * @throws {UsageError} Naming the binary's and the image's architectures.
 */
async function checkFioupArch(path: string, platform: Platform, from: string): Promise<void> {
  const head = new Uint8Array(await Bun.file(path).slice(0, 20).arrayBuffer());
  if (head.length < 20 || head[0] !== 0x7f || head[1] !== 0x45 || head[2] !== 0x4c || head[3] !== 0x46) return;
  const machine = head[5] === 2 ? (head[18]! << 8) | head[19]! : head[18]! | (head[19]! << 8);
  const arch = ELF_MACHINES[machine];
  if (arch && platform.architecture && arch !== platform.architecture) {
    throw new UsageError(
      `--fioup ${path} is built for ${arch}, but the image is for ${formatPlatform(platform)} (from ${from}): give the fioup built for ${platform.architecture}${
        DIST_NAME[platform.architecture] ? ` (npm run build writes dist/fioup-linux-${DIST_NAME[platform.architecture]})` : ""
      }`,
    );
  }
}

/** The --ca file, checked to hold a certificate: anything else would only fail later as a TLS error at the registry. */
async function readCa(path: string): Promise<string> {
  const pem = await readFlagFile(resolve(path), "--ca");
  try {
    new X509Certificate(fromPem(pem, "CERTIFICATE"));
  } catch {
    throw new UsageError(`--ca ${path} is not a PEM certificate (-----BEGIN CERTIFICATE-----)`);
  }
  return pem;
}

/** The --root file, read once and checked to be TUF root metadata (its signatures are checked with the targets). */
async function readRoot(path: string): Promise<RootFile> {
  const json = await readFlagFile(path, "--root");
  try {
    parseMetadata("root", json);
  } catch (e) {
    throw new UsageError(`--root ${path} is not TUF root metadata: ${(e as Error).message}`);
  }
  return { file: path, json };
}
