/**
 * Which target an image gets, from which source: an offline bundle (--bundle), a signed
 * targets.json (--targets), or the gateway (--server); each verified against the trusted root
 * (preload/targets.ts), then the target for the hardware id and tag, of the version asked for.
 * A bundle holds the blobs of one target, so its version is the default, and another version
 * named is refused as one the bundle does not hold.
 *
 * @module
 */
import type { Target } from "../lib/api/index.ts";
import type { Bundle } from "../lib/bundle/index.ts";
import { selectTarget } from "../lib/tuf/select-target.ts";
import { NoTargetError, targetsFromBundle, targetsFromFiles, targetsFromGateway, whatTargetsHold, type RootFile, type VerifiedTargetSet } from "./targets.ts";

/** Where the targets come from: one of bundle, targets (with root), or server with token and its pinned CA. */
export interface TargetSource {
  bundle?: Bundle;
  /** --targets: a signed targets.json. */
  targets?: string;
  server?: string;
  token?: string;
  /** The gateway's CA, pinned by the token. */
  ca?: string;
  /** --root; required with bundle and targets, else the gateway's 1.root.json is the start. */
  root?: RootFile;
}

/**
 * Verifies the source's targets (said first through `info`) and picks the one for `want`.
 *
 * @throws {NoTargetError} No target for the hardware id, tag and version, or one the bundle does not hold.
 */
export async function chooseTarget(
  source: TargetSource,
  want: { hwid: string; tag: string; version?: string },
  info: (line: string) => void,
): Promise<{ verified: VerifiedTargetSet; target: Target }> {
  const { bundle } = source;
  const from = bundle ? `the bundle ${bundle.dir}` : (source.targets ?? `${source.server}/repo/`);
  info(`verifying the targets of ${from} against the TUF root ${source.root?.file ?? `${source.server}/repo/1.root.json`}`);
  const verified = bundle
    ? await targetsFromBundle(bundle, source.root!)
    : source.targets
      ? await targetsFromFiles(source.targets, source.root!)
      : await targetsFromGateway(source.server!, source.token!, source.ca!, source.root);
  // A bundle holds the blobs of one target: that version, unless another is named (and then refused below).
  const target = selectTarget(verified.targets, { hwid: want.hwid, tags: [want.tag], version: want.version ?? bundle?.index.bundle.version });
  if (!target) {
    throw new NoTargetError(
      `No target for hardware id ${want.hwid} and tag ${want.tag}${want.version ? ` with version ${want.version}` : ""} in ${verified.source}: ${whatTargetsHold(verified.targets, { hwid: want.hwid, tag: want.tag })}`,
    );
  }
  if (bundle && target.name !== bundle.index.bundle.target) {
    throw new NoTargetError(`The bundle ${bundle.dir} holds ${bundle.index.bundle.target}, not ${target.name}`);
  }
  return { verified, target };
}
