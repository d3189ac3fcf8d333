/**
 * Refreshes the device's TUF metadata from the gateway (lib/tuf) and picks the
 * target to run (aktualizr-lite's rules: hardware id, tags, highest version,
 * no silent downgrade, bad targets skipped).
 *
 * @module
 */
import { join } from "node:path";
import type { Target, TargetEntry } from "../../lib/api/index.ts";
import { isTargetVersion, TargetNotFoundError } from "../../lib/api/target.ts";
import { selectTarget, targetMatchesDevice, verifyAndLoadTargets, type BadTargets } from "../../lib/tuf/index.ts";
import type { Config } from "../config.ts";
import type { DeviceClient } from "../device-client.ts";
import { DEVICE_TAGS_HEADER } from "../../lib/api/device.ts";
import { followGatewayTags } from "./gateway-tags.ts";
import { namedFew } from "../../lib/cli/few.ts";

export { TargetNotFoundError }; // declared once, in lib/api/target.ts

/** The owner-override warnings this process has said (./gateway-tags.ts). */
const warnedOverrides = new Set<string>();

/**
 * No target at all is published for this device's hardware id and tags (and none runs): a state
 * a new device is in until its first release, not a failure (the daemon says it as such).
 */
export class NoTargetForDeviceError extends TargetNotFoundError {
  override name = "NoTargetForDeviceError";
}

export interface CheckResult {
  /** targets.json version. */
  version: number;
  /** Targets for this device (hwid + tags), by name. */
  matching: Record<string, TargetEntry>;
  /** What the device should run (may equal the current target). */
  selected?: Target;
  /** True when `selected` differs from the current target. */
  updateAvailable: boolean;
}

export async function checkTargets(
  cfg: Config,
  client: DeviceClient,
  opts: { current?: Target; badTargets: BadTargets; version?: string },
): Promise<CheckResult> {
  if (!cfg.hardwareId) throw new TargetNotFoundError("Cannot select a target: provision.primary_ecu_hardware_id is not set");
  // The timestamp's answer says the tags the gateway decided for this device, if it decides them (./gateway-tags.ts).
  let gatewayTags: string | null = null;
  const verified = await verifyAndLoadTargets({
    metadataDir: join(cfg.storagePath, "tuf"),
    metadataBaseUrl: `${cfg.server}/repo/`,
    fetch: async (url, init) => {
      const res = await client.fetch(url, init);
      if (res.ok && url.endsWith("/timestamp.json")) gatewayTags = res.headers.get(DEVICE_TAGS_HEADER);
      return res;
    },
    headers: () => Object.fromEntries(client.headers().entries()),
  });
  const followed = await followGatewayTags(cfg, gatewayTags);
  if (followed.changed) process.stderr.write(`the gateway set this device's tags to ${followed.to.join(",")} (were ${followed.from.join(",") || "none"}); written to ${followed.file}\n`);
  else if ("overriddenIn" in followed) {
    // Once per process and difference: the daemon checks every few minutes.
    const line = `warning: the gateway's tags for this device are ${followed.gateway.join(",")}, but ${followed.overriddenIn} sets pacman.tags ${cfg.tags.join(",") || '""'}, which this device keeps\n`;
    if (!warnedOverrides.has(line)) warnedOverrides.add(line) && process.stderr.write(line);
  }
  const matching: Record<string, TargetEntry> = {};
  for (const [name, e] of Object.entries(verified.targets)) {
    if (targetMatchesDevice(e, cfg.hardwareId, cfg.tags)) matching[name] = e;
  }
  if (opts.version !== undefined && !isTargetVersion(opts.version)) {
    throw new TargetNotFoundError(`Cannot select version "${opts.version}": a version is a number`);
  }
  const selected = selectTarget(verified.targets, {
    hwid: cfg.hardwareId,
    tags: cfg.tags,
    currentVersion: opts.current?.entry.custom.version,
    badTargets: opts.badTargets,
    version: opts.version,
  });
  if (opts.version !== undefined && !selected) {
    throw new TargetNotFoundError(
      `Cannot select version ${opts.version}: no target with that version for hardware id ${cfg.hardwareId} and tags ${cfg.tags.join(",") || "(any)"}`,
    );
  }
  if (!selected && !opts.current && Object.keys(matching).length === 0) {
    throw new NoTargetForDeviceError(
      `Cannot select a target: none for hardware id ${cfg.hardwareId} and tags ${cfg.tags.join(",") || "(any)"} in targets.json version ${verified.version}` +
        whatThereIs(verified.targets, cfg.hardwareId),
    );
  }
  const updateAvailable = !!selected && selected.name !== opts.current?.name;
  return { version: verified.version, matching, selected, updateAvailable };
}

/**
 * What the targets offer instead, for a device none of them is for: the tags of those for its
 * hardware id (a device registered on a token for "main" while CI publishes "master"), else the
 * hardware ids there are. At most 10 of each, so a large repository stays one line.
 */
function whatThereIs(targets: Record<string, TargetEntry>, hwid: string): string {
  const few = (s: Set<string>) => namedFew([...s].sort(), 10);
  const tags = new Set<string>();
  const hwids = new Set<string>();
  for (const e of Object.values(targets)) {
    const ids = Array.isArray(e?.custom?.hardwareIds) ? e.custom.hardwareIds : [];
    for (const id of ids) hwids.add(id);
    if (ids.includes(hwid)) for (const t of Array.isArray(e.custom.tags) ? e.custom.tags : []) tags.add(t);
  }
  if (tags.size) return `; targets for ${hwid} carry the tags ${few(tags)} (a device follows its registration token's tags; gateway devices tag changes them)`;
  if (hwids.size) return `; no target is for hardware id ${hwid} (targets are for ${few(hwids)})`;
  return "; the gateway has no targets yet (gateway publish adds them)";
}
