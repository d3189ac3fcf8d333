/**
 * `gateway publish`: the CI step that turns a containers checkout into
 * pinned compose apps in the factory registry and new signed targets. The
 * gateway CLI registers this file as its `publish` command.
 *
 * @module
 */
import { targetVersionNumber } from "../../lib/api/target.ts";
import { defineCommand, formatFlag, UsageError } from "../../lib/cli/command.ts";
import { sizeText } from "../../lib/cli/bytes.ts";
import { checkFlagPath } from "../../lib/cli/flag-file.ts";
import { whyCannotRead } from "../../lib/fs/paths.ts";
import { progressLine } from "../../lib/cli/progress.ts";
import { PUBLISH_EXIT_CODES } from "./exit-codes.ts";
import { publish } from "./publish.ts";
import { renderPublish } from "./render.ts";


export default defineCommand({
  summary: "Build, pin and push the compose apps of a containers checkout, then add their targets",
  description: [
    "Every top-level directory of --containers holding a docker-compose.yml, compose.yml or compose.yaml",
    "is an app. ${VAR}, ${VAR:-default}, ${VAR:?error}, $$ ... are interpolated at publish time from the",
    "environment and the app's .env, and the resolved file is what devices run. A top-level directory with",
    "a Dockerfile, and every service's build: context inside the repo, is built (docker build, DOCKER_HOST",
    "honoured) and pushed as <registry>/<factory>/<name>:<git short hash>. An image the local engine holds",
    "is pushed from there; others are copied from their registry (credentials from $DOCKER_CONFIG/config.json,",
    "default ~/.docker; a registry whose token realm is the gateway gets --token there instead).",
    "Every image must offer the platform of each --hwid (amd64-linux: linux/amd64, arm64-linux: linux/arm64,",
    "arm-linux: linux/arm/v7...; see --hwid-platform). HEAD must be the commit --ref names (or --commit).",
    "Each compose file is pinned to image digests and pushed as a reproducible bundle; then one target per",
    "hardware id, tagged per factory-config.yml containers.tagging (default: the branch name), is added in",
    "one call. Nothing is published half-way: on any error no target is added.",
    "",
    "The token is a publish (or admin) token of the gateway (<secret>.<CA fingerprint>): the server's /ca.pem is checked",
    "against it and then trusted alone. See docs/publishing.md.",
  ].join("\n"),
  // The gateway's table (gateway/exit-codes.ts), with publish's own rows, and 2 and 130 as they are for publish.
  exitCodes: [
    0,
    1,
    [2, "bad usage (unknown or missing flag, --server not a URL, --registry written as a URL)"],
    3,
    4,
    5,
    ...PUBLISH_EXIT_CODES.map(([, code]) => code),
    [130, "stopped by Ctrl-C (SIGINT) before its targets were added: nothing published"],
    143,
  ],
  flags: {
    containers: { type: "string", description: "The containers repo checkout (a git work tree)", placeholder: "DIR" },
    ref: { type: "string", description: "The git ref being published, e.g. refs/heads/master (HEAD must be its commit)", placeholder: "REF" },
    commit: { type: "string", description: "The commit being published: says which commit HEAD is where the checkout has no --ref (a detached CI checkout); where it has the ref, both must agree", placeholder: "SHA" },
    server: { type: "string", description: "The gateway URL, e.g. https://gateway.example:8443 (any replica: targets name the gateway's registry by its public URL, the one devices use)", placeholder: "URL" },
    token: { type: "string", description: "A publish (or admin) token (or env GATEWAY_TOKEN)", placeholder: "TOKEN" },
    factory: { type: "string", description: "Factory name, the first path part of every repository (default: the one the gateway CA names, else main)", placeholder: "NAME" },
    "factory-config": { type: "string", description: "factory-config.yml (containers.tagging, containers.platforms)", placeholder: "FILE" },
    hwid: { type: "strings", description: "Hardware id to make a target for (default from --platform or this machine)", placeholder: "HWID" },
    version: { type: "string", description: "Target version (default: one above the highest existing)", placeholder: "N" },
    platform: { type: "string", description: "Platform of third-party images to copy, e.g. linux/arm64 (default: all of an index); also the platform of hwids the map does not know", placeholder: "OS/ARCH" },
    "hwid-platform": { type: "strings", description: "Platform a hardware id runs, over factory-config.yml containers.platforms and the built-in map", placeholder: "HWID=OS/ARCH" },
    registry: { type: "string", description: "Push to this registry (host:port) instead of the gateway's; if its token realm is the gateway, --token is sent there over the pinned CA (no Docker login)", placeholder: "HOST" },
    "insecure-registry": { type: "strings", description: "Registry (host:port) to talk plain http to", placeholder: "HOST" },
    mirror: { type: "strings", description: "Resolve a registry's images elsewhere: REGISTRY=HOST, e.g. docker.io=127.0.0.1:5000", placeholder: "R=HOST" },
    "dry-run": { type: "boolean", description: "Build, resolve and show everything; push and post nothing" },
    ...formatFlag,
  },
  async run({ flags, out }) {
    const progress = progressLine((line) => out.info(line));
    const token = flags.token ?? process.env.GATEWAY_TOKEN;
    for (const [name, v] of [["containers", flags.containers], ["ref", flags.ref], ["server", flags.server], ["token", token]] as const) {
      if (!v) throw new UsageError(`--${name} is required`);
    }
    const notRepo = await whyCannotRead(flags.containers!, "directory");
    if (notRepo) throw new UsageError(`--containers ${flags.containers}: ${notRepo}; it takes the containers repo checkout`);
    // Not there is bad usage (2), as in preload; there but invalid is exit 10.
    if (flags["factory-config"]) await checkFlagPath("--factory-config", flags["factory-config"], "file");
    let version: number | undefined;
    if (flags.version !== undefined) {
      version = targetVersionNumber(flags.version);
      if (version === undefined || version <= 0) throw new UsageError(`--version must be a positive integer, not "${flags.version}"`);
    }
    // A host, not a URL: "http://h:5000" would be taken as the host "http" (plain http is --insecure-registry).
    for (const [name, values] of [["registry", flags.registry ? [flags.registry] : []], ["insecure-registry", flags["insecure-registry"]]] as const) {
      for (const v of values) {
        const url = /^([a-z][a-z0-9+.-]*):\/\/([^/]+)/i.exec(v);
        if (url || v.includes("/")) {
          const host = url?.[2] ?? v.split("/")[0]!;
          throw new UsageError(`--${name} takes a registry as HOST[:PORT], not "${v}": give --${name} ${host}${url?.[1] === "http" && name === "registry" ? ` --insecure-registry ${host}` : ""}`);
        }
      }
    }
    if (!/^https?:\/\//i.test(flags.server!)) throw new UsageError(`--server takes the gateway's URL, not "${flags.server}": give --server https://${flags.server!.replace(/^[a-z]+:\/*/i, "")}`);
    const mirrors: Record<string, string> = {};
    for (const m of flags.mirror) {
      const [from, to] = m.split("=");
      if (!from || !to) throw new UsageError(`--mirror must be REGISTRY=HOST, not "${m}"`);
      mirrors[from] = to;
    }
    const hwidPlatforms: Record<string, string> = {};
    for (const m of flags["hwid-platform"]) {
      const [hwid, platform] = m.split("=");
      if (!hwid || !platform || !/^[\w.-]+\/[\w.-]+(\/[\w.-]+)?$/.test(platform)) throw new UsageError(`--hwid-platform must be HWID=OS/ARCH, not "${m}"`);
      hwidPlatforms[hwid] = platform;
    }
    let result: Awaited<ReturnType<typeof publish>>;
    try {
      result = await publish({
        containersDir: flags.containers!,
        ref: flags.ref!,
        ...(flags.commit ? { commit: flags.commit } : {}),
        hwidPlatforms,
        server: flags.server!,
        token: token!,
        ...(flags.factory ? { factory: flags.factory } : {}),
        ...(flags["factory-config"] ? { factoryConfig: flags["factory-config"] } : {}),
        hwids: flags.hwid,
        ...(version !== undefined ? { version } : {}),
        dryRun: flags["dry-run"],
        ...(flags.platform ? { platform: flags.platform } : {}),
        ...(flags.registry ? { registry: flags.registry } : {}),
        insecureRegistries: flags["insecure-registry"],
        mirrors,
        log: (line) => progress.print(line),
        onProgress: (repo, sent, total) => progress.show(`pushing ${repo}: ${sizeText(sent)} sent, of at most ${sizeText(total)}`),
      });
    } finally {
      // Also before an error is printed: it must not be glued to the end of the progress line.
      progress.clear();
    }
    out.result(result, renderPublish);
  },
});
