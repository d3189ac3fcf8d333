import { GroupName, type RolloutRequest } from "../../lib/api/admin.ts";
import { Tag, TargetVersion, targetVersionNumber } from "../../lib/api/target.ts";
import { asUsage, UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { checkFlagValues, durationFlag } from "../../lib/cli/flag-values.ts";
import { WindowSpecError, parseWindow } from "../../lib/schedule/index.ts";
import { parseDuration } from "../../lib/api/duration.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";
import { checkDeviceArgs } from "./_device-arg.ts";
import { InvalidRolloutError } from "../rollouts/errors.ts";
import { ROLLOUT_DEFAULTS, checkTargetVersion, checkTimes } from "../rollouts/settings.ts";
import { parsePercent, parseWaves, renderRollout } from "./_rollouts.ts";
import { nextVersion } from "../publish/targets.ts";
import { commaList } from "../../lib/cli/comma-list.ts";

/** A duration flag checked before any network call (the gateway checks it again). */
function duration(flag: string, value: string | undefined): string | undefined {
  if (value !== undefined) durationFlag(`--${flag}`, value);
  return value;
}

/** Seconds of a checked duration flag, or its default. */
const secondsOr = (value: string | undefined, fallback: number) => (value === undefined ? fallback : parseDuration(value));

export default defineCommand({
  summary: "Roll a target version out to a group or a tag in waves that advance, or halt, on their own",
  description: [
    "Devices of the group (or with the tag) are ordered by a hash of their uuid, so the same devices come",
    "first every time (--first puts named devices ahead). Wave k releases the version to the first --waves[k]",
    "percent of them; devices outside the released waves are served signed metadata without it.",
    "",
    "A device succeeds when its update completed and every app of the target stayed healthy for",
    "--health-window; it fails on an install or start failure, a rollback, an unhealthy app within the",
    "window, or when still pending --pending-timeout after its wave started. The next wave starts after",
    "--soak once every device of the current wave settled; the rollout halts by itself as soon as more",
    "than --max-failures of the released devices failed.",
    "",
    "Create the rollout before publishing the version's targets, so no device sees them early; the pending",
    "timeout counts from the publication when that comes later (nobody times out before it). Publish then with",
    "--version VERSION (without it, publish makes the version one above the highest; create says which).",
    "",
    "Durations are a whole number with its unit, s, m, h, d or w (90s, 30m, 1h, 2d). A window is days and",
    "local times with an optional time zone: \"Sat 02:00-04:00 Europe/Berlin\", \"Mon-Fri 22:00-06:00\" (crosses",
    "midnight), \"daily 01:00-05:00; Sat,Sun 00:00-24:00\"; without a zone each device reads it in its own",
    "(fioup's time_zone, else its timezone label, else the system's). --max-hold defaults to the device's (24h).",
    "Bad input exits 2 before anything is sent; the gateway's refusals (unknown group, a second active",
    "rollout of the version, the TUF targets key offline: nothing is created) exit 3 with its reason.",
    "",
    "Examples:",
    "  gateway rollouts create --target 42 --group eu-kiosks --waves 1%,10%,50%,100% --soak 30m --max-failures 5%",
    '  gateway rollouts create --target 42 --tag prod --waves 10%,100% --window "Sat 02:00-04:00 Europe/Berlin" --max-hold 24h',
    "",
    ADMIN_HELP,
  ].join("\n"),
  flags: {
    ...adminFlags,
    target: { type: "string", description: "The target version to release (custom.version)", placeholder: "VERSION" },
    group: { type: "string", description: "Release to this device group (gateway groups list)", placeholder: "GROUP" },
    tag: { type: "string", description: "Release to the devices with this tag", placeholder: "TAG" },
    waves: { type: "string", description: "Cumulative percents of the devices, increasing, ending in 100%", placeholder: "1%,10%,100%" },
    soak: { type: "string", description: "Time each wave runs before the next one (default 30m)", placeholder: "DURATION" },
    "max-failures": { type: "string", description: "Halt when more than this share of released devices failed (default 5%)", placeholder: "PERCENT" },
    "health-window": { type: "string", description: "How long every app must stay healthy after the update (default 10m)", placeholder: "DURATION" },
    "pending-timeout": { type: "string", description: "A device still pending this long after its wave started (or the version was published) fails; longer than --health-window (default 1h)", placeholder: "DURATION" },
    window: { type: "string", description: 'Devices install only inside this window, in their time zone, e.g. "Sat 02:00-04:00 Europe/Berlin"', placeholder: "WINDOW", allowEmpty: true },
    "max-hold": { type: "string", description: "Longest an app's update lock may defer the install", placeholder: "DURATION" },
    "rollback-on-halt": { type: "boolean", description: "Record that a halt should move updated devices back (stored and shown; not acted upon yet: docs/rollouts.md)" },
    first: { type: "strings", description: "Devices that go first (comma-separated uuids)", placeholder: "UUID,..." },
    ...formatFlag,
  },
  async run({ flags, out }) {
    if (!flags.target) throw new UsageError("--target VERSION is required");
    if (!flags.group === !flags.tag) throw new UsageError("give exactly one of --group GROUP or --tag TAG");
    if (!flags.waves) throw new UsageError("--waves is required, e.g. --waves 1%,10%,100%");
    checkFlagValues("--target", TargetVersion, [flags.target]);
    asUsage([InvalidRolloutError], () => checkTargetVersion(flags.target!), "--target: ");
    // A tag or group no device can have would release to nobody.
    checkFlagValues("--tag", Tag, flags.tag === undefined ? [] : [flags.tag]);
    checkFlagValues("--group", GroupName, flags.group === undefined ? [] : [flags.group]);
    const first = commaList(flags.first);
    // A bad --first is said before the other flags are checked (a lookup only for a refused value).
    await checkDeviceArgs("--first", first, () => adminClient(flags));
    const req: RolloutRequest = {
      target: flags.target,
      ...(flags.group ? { group: flags.group } : { tag: flags.tag! }),
      waves: parseWaves(flags.waves),
    };
    const soak = duration("soak", flags.soak);
    const healthWindow = duration("health-window", flags["health-window"]);
    const pendingTimeout = duration("pending-timeout", flags["pending-timeout"]);
    const maxHold = duration("max-hold", flags["max-hold"]);
    const times = [secondsOr(healthWindow, ROLLOUT_DEFAULTS.healthWindowS), secondsOr(pendingTimeout, ROLLOUT_DEFAULTS.pendingTimeoutS)] as const;
    asUsage([InvalidRolloutError], () => checkTimes(...times), "--pending-timeout: ");
    if (soak) req.soak = soak;
    if (healthWindow) req.healthWindow = healthWindow;
    if (pendingTimeout) req.pendingTimeout = pendingTimeout;
    if (maxHold) req.maxHold = maxHold;
    if (flags["max-failures"] !== undefined) req.maxFailures = parsePercent("max-failures", flags["max-failures"]);
    // `--window ""` (an unset shell variable) is refused, not read as "no window".
    if (flags.window !== undefined) req.window = asUsage([WindowSpecError], () => (parseWindow(flags.window!), flags.window!), "--window: ");
    if (flags["rollback-on-halt"]) req.rollbackOnHalt = true;
    if (first.length) req.first = first;
    const client = await adminClient(flags);
    out.result(await client.createRollout(req), renderRollout);
    // Made before the publish it gates, as it should be, the rollout names a version publish picks
    // itself unless told: said, so the two agree (else the version publish makes goes out ungated).
    const { targets, running } = await client.targets().catch(() => ({ targets: undefined, running: [] }));
    const version = targetVersionNumber(flags.target);
    if (targets && !Object.values(targets).some((t) => targetVersionNumber(t.custom?.version) === version))
      out.info(`note: the gateway has no target of version ${flags.target} yet: the next publish makes version ${nextVersion(targets, running)} (gateway publish --version ${flags.target} makes ${flags.target})`);
  },
});
