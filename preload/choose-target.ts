/**
 * Which target an image gets, from which source: an offline bundle (--bundle), a signed
 * targets.json (--targets), or the gateway (--server); each verified against the trusted root
 * (preload/targets.ts), then the target for the hardware id and tag, of the version asked for.
 * A bundle holds the blobs of one target, so its version is the default, and another version
 * named is refused as one the bundle does not hold.
 *
 * From the gateway, a version a rollout holds back (lib/api/rollout-hold.ts) is not the default:
 * the gateway shows it to no device the rollout has not released it to, and a device registered
 * after the rollout began is never one of its members, so a factory's new devices would not be
 * offered it either (docs/rollouts.md). Baked into an image they would run it from their first
 * boot, past the gate and outside the health verdicts that could halt it, a halted version
 * included. So without --target the newest version no rollout holds back is taken, and said;
 * --target names a held one on purpose, and is warned about as `gateway export` warns.
 *
 * @module
 */
import type { Target, TargetEntry } from "../lib/api/index.ts";
import type { RolloutRow } from "../lib/api/admin.ts";
import { holdText } from "../lib/api/rollout-hold.ts";
import type { Bundle } from "../lib/bundle/index.ts";
import { selectTarget, targetMatchesDevice } from "../lib/tuf/select-target.ts";
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
  /** With server: the rollout holding each version back, if the token may read them (lib/api/rollout-hold.ts). */
  holds?: Map<string, RolloutRow>;
  /** Where the TUF client's metadata folder is made for the while: preload's work folder, which a stop (Ctrl-C) removes. */
  scratch?: string;
}

/**
 * Verifies the source's targets (said first through `info`) and picks the one for `want`: without
 * a version, the newest one no rollout in `source.holds` holds back (each held version passed over
 * said through `info`); a held version named is taken with a warning.
 *
 * @throws {NoTargetError} No target for the hardware id, tag and version, or one the bundle does not hold, or (no version named) every one is held back.
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
    ? await targetsFromBundle(bundle, source.root!, source.scratch)
    : source.targets
      ? await targetsFromFiles(source.targets, source.root!)
      : await targetsFromGateway(source.server!, source.token!, source.ca!, source.root, source.scratch);
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
  const holds = bundle || source.targets ? undefined : source.holds;
  if (!holds?.size) return { verified, target };
  const unheld = (entries: Record<string, TargetEntry>) => Object.fromEntries(Object.entries(entries).filter(([, e]) => !holds.has(String(e.custom.version))));
  if (want.version !== undefined) {
    const r = holds.get(String(target.entry.custom.version));
    if (r) {
      const free = selectTarget(unheld(verified.targets), { hwid: want.hwid, tags: [want.tag] });
      info(
        `warning: ${holdText(r)}: devices made from this image run it from their first boot all the same, outside its waves and its health verdicts, and stay on it until a newer version reaches them; without --target, preload takes the newest version no rollout holds back${free ? ` (${free.entry.custom.version})` : ""}, which is what a device registering now is offered`,
      );
    }
    return { verified, target };
  }
  const free = selectTarget(unheld(verified.targets), { hwid: want.hwid, tags: [want.tag] });
  // The held versions newer than the one taken, newest first: each said with its rollout.
  const skipped = [...new Set(Object.values(verified.targets).filter((e) => targetMatchesDevice(e, want.hwid, [want.tag])).map((e) => String(e.custom.version)))]
    .filter((v) => holds.has(v) && (!free || Number(v) > Number(free.entry.custom.version)))
    .sort((a, b) => Number(b) - Number(a));
  if (!free) {
    throw new NoTargetError(
      `No target for hardware id ${want.hwid} and tag ${want.tag} that no rollout holds back in ${verified.source}: ${skipped.map((v) => holdText(holds.get(v)!)).join("; ")}; a device registering now is offered none of them: give --target ${skipped[0]} to preload version ${skipped[0]} anyway`,
    );
  }
  for (const v of skipped) {
    info(`${holdText(holds.get(v)!)}: preloading version ${free.entry.custom.version}, the newest no rollout holds back, which is what a device registering now is offered (--target ${v} preloads version ${v} anyway)`);
  }
  return { verified, target: free };
}
