/**
 * `preload`: assemble a system image with compose apps baked in (layout: lib/device; exit codes: preload/exit-codes.ts).
 * This file is the command: its flags, each checked before any work, and the order of the steps. What
 * each step decides lives in preload/: the target (choose-target.ts), the platform (platform.ts),
 * the fioup the image carries (fioup-binary.ts), the work folder beside --out and its clean-up
 * (work-dir.ts), the tree (assemble.ts) and the output (output.ts).
 */
import { X509Certificate } from "node:crypto";
import { mkdir, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { HardwareId, Tag, TargetVersion } from "../../lib/api/target.ts";
import { publicUrlOf } from "../../lib/api/admin.ts";
import { AdminClient } from "../../lib/api/admin-client.ts";
import { readHoldingRollouts } from "../../lib/api/rollout-hold.ts";
import { defineCommand, UsageError, type FlagSpec, type FlagValues, type Output } from "../../lib/cli/command.ts";
import { checkFlagPath, readFlagFile, readPemFlagFile } from "../../lib/cli/flag-file.ts";
import { checkFlagValues, checkGatewayUrl, checkRegistryHosts } from "../../lib/cli/flag-values.ts";
import { parsePlatform, type Platform } from "../../lib/oci/platform.ts";
import { parseReference } from "../../lib/oci/reference.ts";
import { fetchPinnedCa, InvalidTokenError, parsePinnedToken } from "../../lib/tls/pin.ts";
import { parseMetadata } from "../../lib/tuf/metadata.ts";
import { fromPem } from "../../lib/x509/pem.ts";
import { DEFAULT_DEVICE_PATHS } from "../../lib/device/paths.ts";
import { assemble } from "../assemble.ts";
import { decidePreload, readFactoryConfig, type BuildKind } from "../../lib/factory-config/index.ts";
import { checkExt4Size, checkOutputPath, checkRoom, imageNeeds, whyCannotWriteAt, writeOutput, type OutputFormat } from "../output.ts";
import { parseSize } from "../../lib/cli/size.ts";
import { unpackBase } from "../base.ts";
import { explainTlsFailure, RegistryAccess } from "../registries.ts";
import type { RootFile } from "../targets.ts";
import { bundleRegistries, openBundle, type Bundle } from "../../lib/bundle/index.ts";
import { sizeText } from "../../lib/cli/bytes.ts";
import { progressLine } from "../../lib/cli/progress.ts";
import { chooseTarget } from "../choose-target.ts";
import { checkFioupBinary, checkFioupPresent } from "../fioup-binary.ts";
import { imagePlatform } from "../platform.ts";
import { noSpaceError, openWorkDir } from "../work-dir.ts";

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
  target: { type: "string", description: "Target version to preload (default: the latest for the tag that no rollout holds back)", placeholder: "VERSION" },
  tag: { type: "string", description: "Target tag (default: the first tag the ref maps to)", placeholder: "TAG" },
  hwid: { type: "string", description: "Hardware id of the device", default: "x86_64-linux", placeholder: "HWID" },
  platform: { type: "string", description: "Image platform, e.g. linux/arm64 (default: from --hwid)", placeholder: "OS/ARCH" },
  out: { type: "string", description: "Where to write the image (replaces only an earlier preload image, or an empty file or directory)", placeholder: "PATH" },
  format: { type: "string", description: "Output: dir, tar or ext4", default: "dir", placeholder: "FORMAT" },
  size: { type: "string", description: "Size of the ext4 image, to match its partition: 512M, 2G or bytes, binary units (default: the content plus 20%, at least 64 MiB); ext4 only", placeholder: "SIZE" },
  base: { type: "string", description: "Base root filesystem to layer onto (directory or tar)", placeholder: "ROOTFS" },
  cache: { type: "string", description: "Blob cache reused across runs", placeholder: "DIR" },
  fioup: { type: "string", description: "fioup binary to install as /usr/bin/fioup, built for the image's architecture (checked); required with a --base that has no /usr/bin/fioup", placeholder: "FILE" },
  "registry-token": { type: "string", description: "Token for the target's registries other than the gateway (default without --server: --token; or env PRELOAD_REGISTRY_TOKEN)", placeholder: "TOKEN" },
  ca: { type: "string", description: "CA certificate (PEM) to trust for the target's registries and their token realms other than the --server gateway (trusted through the token's pin); for a realm at the gateway under another name, the factory CA", placeholder: "FILE" },
  "insecure-registry": { type: "strings", description: "Registry host:port to reach over plain HTTP (what it serves is still checked against the signed digests)", placeholder: "HOST" },
  explain: { type: "boolean", description: "Print the preload decision and where it came from, then exit (needs no --out nor source)" },
  json: { type: "boolean", description: "Print the result, or the error ({error, code, exitCode}), as JSON on stdout (bad usage, exit 2, is said on stderr only)" },
} as const satisfies Record<string, FlagSpec>;

export default defineCommand({
  summary: "Assemble a system image with compose apps preloaded",
  description: [
    "Decides which apps to preload from factory-config.yml and the git ref, picks the target for",
    "the ref's tag and the hardware id (from the gateway without --target: the newest version no",
    "rollout holds back, as a device registering now is offered), verifies it against the TUF root, and writes a root",
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
    "with a CA pin makes --ca unnecessary for the gateway's registry. With --server, --token goes to",
    "the gateway only (other registries get --registry-token, if given): a registry the target's apps",
    "name whose token realm is the gateway gets the --token there, over the pinned CA: at the realm the registry",
    "names, the gateway's public URL, which the build host must reach.",
    "",
    "--format ext4 --size SIZE makes the image exactly SIZE bytes, to be written onto a partition of",
    "that size; content that does not fit is refused before the blobs are fetched, saying the --size it needs.",
  ].join("\n"),
  flags: FLAGS,
  // --format names the image's type: --json asks for JSON results and errors, as --format json does elsewhere.
  jsonFlag: "json",
  run: ({ flags, out }) => run(flags, out),
});

/** The command: check the flags, decide from the config, verify the target, write the image. */
async function run(flags: FlagValues<typeof FLAGS>, out: Output): Promise<number | void> {
  // The other tools' way to ask for JSON: said first, as the flag a user meant, not as a missing one.
  if (flags.format === "json" || flags.format === "text")
    throw new UsageError(`--format names the image's type here (${FORMATS.join(", ")}): for JSON output give --json`);
  if (!flags["factory-config"]) throw new UsageError("--factory-config is required");
  if (!flags.ref) throw new UsageError("--ref is required");
  if (flags.kind !== "containers" && flags.kind !== "lmp") throw new UsageError("--kind must be containers or lmp");
  const token = flags.token ?? process.env.PRELOAD_TOKEN;
  // Every flag is checked before the config decides: a CI line with a typo must fail on every
  // ref, not pass green on the refs that build no image and break on the first one that does.
  const checked = await checkFlags(flags, token);
  const config = await readFactoryConfig(flags["factory-config"], { warn: (line) => out.info(`warning: ${line}`) });
  // Preloading is off unless a section turns it on, so a wrong path (a compose file) would pass
  // green and write nothing: a file without either section is no factory config.
  if (!config.containers && !config.lmp) {
    const keys = Object.keys(config);
    throw new UsageError(
      `--factory-config ${flags["factory-config"]} is no factory-config.yml: it has neither a containers nor an lmp section${keys.length ? ` (its top-level keys: ${keys.join(", ")})` : " (it is empty)"}; give the factory's factory-config.yml`,
    );
  }
  const decision = decidePreload(config, flags.ref, flags.kind as BuildKind);
  if (flags.explain || !decision.assemble) {
    const what = decision.assemble
      ? `preload ${decision.apps ? decision.apps.join(", ") : "all apps of the target"} (tags: ${decision.tags.join(", ")})`
      : `no system image for ${flags.ref}`;
    out.result({ ...decision, ref: flags.ref }, () => [`${flags.ref}: ${what}`, ...decision.reasons.map((r) => `  - ${r}`)].join("\n"));
    // A CI job that gave --out and finds no file there learns why here, not at its upload step.
    if (!flags.explain && flags.out) out.info(`warning: no image was written to --out ${flags.out}: the rules of ${flags["factory-config"]} for ${flags.ref} say no system image (above)`);
    return 0;
  }

  const format = flags.format as OutputFormat;
  const outPath = resolve(flags.out!);
  await checkOutputPath(outPath, format);
  const { size, bundle } = checked;
  const { platform, from } = imagePlatform({ platform: checked.platform, hwid: flags.hwid, containers: config.containers });
  if (flags.fioup) await checkFioupBinary(flags.fioup, platform, from);

  // The work folder first: its making tells whether --out's file system takes files at all
  // (preload/work-dir.ts), before the gateway is asked.
  const progress = progressLine((line) => out.info(line));
  const work = await openWorkDir(outPath, { info: (line) => out.info(line), onStop: () => progress.clear() });
  try {
    const ca = flags.server && token ? await fetchPinnedCa(flags.server, token) : undefined;
    const admin = flags.server && token && ca ? await AdminClient.connect({ server: flags.server, token, ca }) : undefined;
    // Which versions rollouts hold back (preload/choose-target.ts): a token that may not read
    // rollouts (publish) is answered nothing, and preload takes the newest version, as before.
    const holds =
      admin && !bundle && !flags.targets
        ? await readHoldingRollouts(admin).catch((err: unknown) => {
            out.info(`warning: could not read the rollouts of ${flags.server} (${err instanceof Error ? err.message : String(err)}): a version a rollout holds back is not passed over`);
            return undefined;
          })
        : undefined;
    const tag = flags.tag ?? decision.tags[0]!;
    const { verified, target } = await chooseTarget(
      { bundle, targets: flags.targets, server: flags.server, token, ca, root: checked.root, scratch: work.path, ...(holds ? { holds } : {}) },
      { hwid: flags.hwid, tag, version: flags.target },
      (line) => out.info(line),
    );

    // The host the targets name the gateway's registry by (its public URL) may not be --server's.
    // Without it preload still runs: said once, since images then come from the host they name.
    const publicHost = admin
      ? publicUrlOf(
          await admin.whoami().catch((err: unknown) => {
            out.info(
              `Could not read the gateway's public URL from ${flags.server} (${err instanceof Error ? err.message : String(err)}): images named under a host other than ${new URL(flags.server!).host} are fetched from that host`,
            );
            return undefined;
          }),
        )?.host
      : undefined;
    const appUris = Object.values(target.entry.custom.docker_compose_apps ?? {}).map((a) => a.uri);
    // With --server, --token is the gateway's API token: never sent to another registry as it is (only to the gateway as a realm).
    const otherToken = flags["registry-token"] ?? process.env.PRELOAD_REGISTRY_TOKEN ?? (flags.server ? undefined : token);
    const access = new RegistryAccess({
      ...(flags.server && token && ca ? { gateway: { host: new URL(flags.server).host, token, ca, ...(publicHost ? { publicHost } : {}) } } : {}),
      realmHosts: new Set(appUris.map((u) => parseReference(u).registry)),
      ...(otherToken !== undefined ? { token: otherToken } : {}),
      ...(checked.ca !== undefined ? { ca: checked.ca } : {}),
      insecure: new Set(flags["insecure-registry"]),
    });
    await access.prepare(appUris);

    const cacheDir = flags.cache ? resolve(flags.cache) : join(work.path, "cache");
    const tree = join(work.path, "rootfs");
    // A dir image outlives the run: it must not share blob files with a kept cache.
    const linkFromCache = format !== "dir" || !flags.cache;
    await mkdir(tree, { recursive: true });
    if (flags.base) {
      await progress.during(`layering onto base ${flags.base}`, () => unpackBase(flags.base!, tree));
    }
    const noFioup = await checkFioupPresent({ fioup: flags.fioup, base: flags.base, tree, platform });
    if (noFioup) out.info(noFioup);
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
        if (size !== undefined) await checkExt4Size(tree, size, join(work.path, "ext4-probe"), [...blobs, ...files]);
        await checkRoom(await imageNeeds({ tree, out: outPath, format, blobs, toFetch, cacheDir, copied: !linkFromCache, files }));
      },
      onProgress: (l) => progress.print(l),
      onFetching: (l) => progress.show(l),
    })
      .catch((err: unknown) => {
        throw explainTlsFailure(err, { ca: checked.ca !== undefined, token: token !== undefined, server: flags.server !== undefined }) ?? err;
      })
      .finally(() => progress.clear());
    await progress.during(`writing ${format} output to ${outPath}`, () => writeOutput(tree, outPath, format, { size, onReplace: (held) => work.replacingOut(held) }));
    out.result(
      { ...result, out: outPath, format, ref: flags.ref, tag },
      () =>
        `preloaded ${result.apps.join(", ")} of ${result.target} into ${outPath} (${format}): ${result.blobs} blobs, ${sizeText(result.bytes)}, ${sizeText(result.fetched)} fetched${result.resumed ? ` (and ${sizeText(result.resumed)} resumed from an earlier run)` : ""}`,
    );
  } catch (err) {
    throw noSpaceError(err, { outPath, cache: flags.cache, format }) ?? err;
  } finally {
    await work.close();
  }
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
  await checkFlagPath("--factory-config", flags["factory-config"]!, "file");
  if (flags.targets) await checkFlagPath("--targets", flags.targets, "file");
  if (flags.bundle) await checkFlagPath("--bundle", flags.bundle, "directory");
  if (flags.base) await checkFlagPath("--base", flags.base);
  if (flags.fioup) await checkFlagPath("--fioup", flags.fioup, "file");
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

/** The --ca file, checked to hold a certificate: anything else would only fail later as a TLS error at the registry. */
async function readCa(path: string): Promise<string> {
  const pem = await readPemFlagFile(path, "--ca", "CERTIFICATE");
  try {
    new X509Certificate(fromPem(pem, "CERTIFICATE"));
  } catch {
    throw new UsageError(`Cannot read --ca ${path}: its CERTIFICATE block does not parse as a certificate`);
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
