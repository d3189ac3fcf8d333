/**
 * Where preload gets its target from, verified against the TUF root before a
 * single blob is fetched: either the gateway's TUF repository (full TUF client
 * workflow, as a device would run it) or a targets.json file checked against a
 * root.json (for factories that build images offline).
 *
 * @module
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Metadata, Root, Targets } from "@tufjs/models";
import { Value } from "@sinclair/typebox/value";
import { TargetEntry } from "../lib/api/index.ts";
import { AdminApiError, AdminClient } from "../lib/api/admin-client.ts";
import { BUNDLE_METADATA_BASE_URL, bundleMetadataFetch, type Bundle } from "../lib/bundle/index.ts";
import { parseMetadata } from "../lib/tuf/metadata.ts";
import { MetadataFetchError } from "../lib/tuf/verification-errors.ts";
import { verifyAndLoadTargets } from "../lib/tuf/verify-targets.ts";

/** No target for the hardware id, tag and version asked for (or the bundle holds another). */
export class NoTargetError extends Error {
  override name = "NoTargetError";
}

/**
 * What the verified targets do hold, for a {@link NoTargetError}: the hardware ids when none
 * is `hwid`'s, its tags when none carries `tag`, else its versions with that tag. So a
 * forgotten --hwid (default x86_64-linux) or a typo says what to give instead.
 */
export function whatTargetsHold(targets: Record<string, TargetEntry>, want: { hwid: string; tag: string }): string {
  const entries = Object.values(targets);
  const list = (xs: Iterable<string>) => {
    const all = [...new Set(xs)];
    return all.length > 10 ? `${all.slice(-10).join(", ")} (the last 10 of ${all.length})` : all.join(", ");
  };
  const forHwid = entries.filter((e) => e.custom.hardwareIds?.includes(want.hwid));
  if (!entries.length) return "it holds no target at all (has anything been published?)";
  if (!forHwid.length) return `it holds targets for hardware ids ${list(entries.flatMap((e) => e.custom.hardwareIds ?? []).sort())}: give one of them with --hwid (the default is x86_64-linux)`;
  const tagged = forHwid.filter((e) => e.custom.tags?.includes(want.tag));
  if (!tagged.length) return `its targets for ${want.hwid} carry tags ${list(forHwid.flatMap((e) => e.custom.tags ?? []).sort())}: give one of them with --tag (the default is the first tag the ref maps to)`;
  const versions = [...new Set(tagged.map((e) => Number(e.custom.version)))].sort((a, b) => a - b).map(String);
  return `it holds versions ${list(versions)} for ${want.hwid} and tag ${want.tag}: give one of them with --target, or none for the newest`;
}

export class TargetsVerificationError extends Error {
  override name = "TargetsVerificationError";
}

/** The gateway refused the token, or the server has no TUF repository: not a verification failure. */
export class GatewayAccessError extends Error {
  override name = "GatewayAccessError";
}

/** What an HTTP status from the gateway's /repo/ means for preload, when it is not about the metadata itself. */
function accessError(status: number | undefined, url: string, server: string, why?: string): GatewayAccessError | undefined {
  if (status === 401 || status === 403)
    return new GatewayAccessError(
      `The gateway ${server} refused the token (--token, or PRELOAD_TOKEN): HTTP ${status} for ${url}${why ? ` (${why})` : ""}; give a current token of that gateway (a viewer token is enough)`,
    );
  if (status === 404) return new GatewayAccessError(`${server} does not look like a gateway: no TUF repository at ${url} (HTTP 404); check --server`);
  return undefined;
}

/** The trusted root.json `--root` names: its path (for messages) and its text, read once and checked before anything else runs. */
export interface RootFile {
  file: string;
  json: string;
}

export interface VerifiedTargetSet {
  targets: Record<string, TargetEntry>;
  /** The root the targets were verified with: baked into the image as the device's trust anchor. */
  rootJson: string;
  source: string;
}

/**
 * Verifies a targets.json file against a root.json: the targets role's keys and
 * threshold from the root, and both files' expiry.
 *
 * @throws {TargetsVerificationError} If either file is malformed, expired or not signed by the root's targets keys.
 */
export async function targetsFromFiles(targetsFile: string, rootFile: RootFile, now = new Date()): Promise<VerifiedTargetSet> {
  const { file: rootPath, json: rootJson } = rootFile;
  let root: Metadata<Root>;
  let targets: Metadata<Targets>;
  try {
    root = parseMetadata("root", rootJson);
  } catch (err) {
    throw new TargetsVerificationError(`${rootPath} is not TUF root metadata: ${(err as Error).message}`);
  }
  try {
    targets = parseMetadata("targets", await readFile(targetsFile, "utf8"));
  } catch (err) {
    throw new TargetsVerificationError(`Cannot read ${targetsFile}: ${(err as Error).message}`);
  }
  // TUF §5.3.4: the root must be signed by its own threshold of root keys.
  try {
    root.verifyDelegate("root", root);
  } catch {
    throw new TargetsVerificationError(`${rootPath} is not signed by a threshold of its own root keys`);
  }
  if (root.signed.isExpired(now)) throw new TargetsVerificationError(`${rootPath} expired on ${root.signed.expires}`);
  // TUF §5.6.3: targets signed by a threshold of the root's targets keys.
  try {
    root.verifyDelegate("targets", targets);
  } catch {
    throw new TargetsVerificationError(`${targetsFile} is not signed by the targets keys of ${rootPath}`);
  }
  if (targets.signed.isExpired(now)) throw new TargetsVerificationError(`${targetsFile} expired on ${targets.signed.expires}`);
  return { targets: ourTargets(targets.signed), rootJson, source: targetsFile };
}

function ourTargets(t: Targets): Record<string, TargetEntry> {
  const out: Record<string, TargetEntry> = {};
  for (const [name, file] of Object.entries(t.targets)) {
    const entry = { length: file.length, hashes: file.hashes, custom: file.unrecognizedFields?.custom ?? (file as any).custom };
    if (Value.Check(TargetEntry, entry)) out[name] = entry;
  }
  return out;
}

/**
 * Runs the TUF client workflow on an offline bundle's metadata (from `gateway export`),
 * starting from `rootFile`: a bundle cannot vouch for its own first root, so the caller
 * names the root it trusts. Only a full bundle (made without `--from`) can be preloaded.
 * `scratch`: where its metadata folder is made for the while (preload's work folder, which a stop removes).
 *
 * @throws {TargetsVerificationError} A bundle made with --from. @throws {InvalidBundleError} Not a complete bundle.
 */
export async function targetsFromBundle(bundle: Bundle, rootFile: RootFile, scratch = tmpdir()): Promise<VerifiedTargetSet> {
  if (bundle.index.bundle.from !== undefined) {
    throw new TargetsVerificationError(`Cannot preload from ${bundle.dir}: it was made --from ${bundle.index.bundle.from} and lacks what that version had; export one without --from`);
  }
  const dir = await mkdtemp(join(scratch, "preload-tuf-"));
  try {
    await writeFile(join(dir, "root.json"), rootFile.json);
    const verified = await verifyAndLoadTargets({ metadataDir: dir, metadataBaseUrl: BUNDLE_METADATA_BASE_URL, fetch: bundleMetadataFetch(bundle.dir) });
    return { targets: verified.targets, rootJson: await readFile(join(dir, "root.json"), "utf8"), source: `the bundle ${bundle.dir}` };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Runs the TUF client workflow against the gateway's /repo/ with an API token
 * (viewer, publish or admin: each reads the main chain), starting from `rootFile` if given, else from the gateway's 1.root.json
 * fetched over the CA pinned by the token. `scratch` as for {@link targetsFromBundle}.
 *
 * @throws {GatewayAccessError} The token is refused (401, 403) or there is no TUF repository (404).
 * @throws {TargetsVerificationError} Another HTTP error for 1.root.json.
 */
export async function targetsFromGateway(server: string, token: string, ca: string, rootFile?: RootFile, scratch = tmpdir()): Promise<VerifiedTargetSet> {
  const dir = await mkdtemp(join(scratch, "preload-tuf-"));
  try {
    const headers = () => ({ authorization: `Bearer ${token}` });
    // Under the server's path (https://host/ota/repo/...), as fioup and the admin client join it.
    const repo = `${server.replace(/\/+$/, "")}/repo/`;
    let rootJson: string;
    if (rootFile) rootJson = rootFile.json;
    else {
      const url = `${repo}1.root.json`;
      const admin = await AdminClient.connect({ server, token, ca });
      const root = await admin.file("/repo/1.root.json").catch((err: unknown) => {
        // A refusal (not an unreachable gateway, which has no status): what it means for preload.
        if (!(err instanceof AdminApiError) || err.status === undefined) throw err;
        throw accessError(err.status, url, server, err.reason) ?? new TargetsVerificationError(`Cannot fetch 1.root.json from ${server}: HTTP ${err.status}`);
      });
      if (!root) throw accessError(404, url, server)!;
      rootJson = new TextDecoder().decode(root);
    }
    await writeFile(join(dir, "root.json"), rootJson);
    const verified = await verifyAndLoadTargets({ metadataDir: dir, metadataBaseUrl: repo, fetch: { tls: { ca } }, headers }).catch((err: unknown) => {
      throw (err instanceof MetadataFetchError && accessError(err.status, repo, server)) || err;
    });
    // The newest trusted root (after any rotation) is what the device should start from.
    const latestRoot = await readFile(join(dir, "root.json"), "utf8");
    return { targets: verified.targets, rootJson: latestRoot, source: repo };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
