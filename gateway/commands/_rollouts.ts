/**
 * What the `gateway rollouts` commands share: reading wave and percent
 * flags, and the text rendering of a rollout (`show` and every action print it).
 *
 * @module
 */
import { HOLD_KIND_NAMES, type RolloutDetail, type RolloutRow } from "../../lib/api/admin.ts";
import type { AdminClient } from "../../lib/api/admin-client.ts";
import { asUsage, UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { cell, table } from "../../lib/cli/table.ts";
import { InvalidRolloutError } from "../rollouts/errors.ts";
import { checkWaves } from "../rollouts/membership.ts";
import { formatSeconds } from "../../lib/api/duration.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";
import { commaList } from "../../lib/cli/comma-list.ts";

/**
 * A percent as the CLI takes it: "5%", "5" or "0.5%".
 *
 * @throws {UsageError} If it is not a number from 0 to 100.
 */
export function parsePercent(flag: string, text: string): number {
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*%?\s*$/.exec(text);
  const n = m ? Number(m[1]) : Number.NaN;
  if (!(n >= 0 && n <= 100)) throw new UsageError(`--${flag} must be a percent from 0 to 100 (e.g. 5%), got "${text}"`);
  return n;
}

/**
 * Cumulative wave percents: "1%,10%,100%".
 *
 * @throws {UsageError} If a wave is not a percent above 0, the waves do not increase, or the last is not 100%.
 */
export function parseWaves(text: string): number[] {
  const waves = commaList(text).map((w) => parsePercent("waves", w));
  asUsage([InvalidRolloutError], () => checkWaves(waves), "--waves: "); // the gateway's own rule
  return waves;
}


const audienceOf = (r: RolloutRow) => (r.groupName !== null ? `group ${cell(r.groupName)}` : `tag ${cell(r.tag)}`);

/** One line per rollout (`rollouts list`). */
export const renderRolloutList = (rollouts: RolloutRow[]) =>
  table(
    ["ID", "TARGET", "AUDIENCE", "STATE", "WAVE", "WAVES", "UPDATED", "REASON"],
    rollouts.map((r) => [r.id, r.targetVersion, audienceOf(r), r.state, `${r.wave + 1}/${r.waves.length}`, r.waves.map((w) => `${w}%`), r.updatedAt, r.reason]),
    { empty: "(no rollouts)" },
  );

/** A rollout as `rollouts show` prints it: settings, devices per wave, holds, failures, recent events. */
export function renderRollout(d: RolloutDetail): string {
  const settings = [
    `soak ${formatSeconds(d.soakS)}`,
    `max failures ${d.maxFailuresPct}%`,
    `health window ${formatSeconds(d.healthWindowS)}`,
    `pending timeout ${formatSeconds(d.pendingTimeoutS)}`,
    ...(d.installWindow ? [`window ${cell(d.installWindow)}`] : []),
    ...(d.maxHoldS !== null ? [`max hold ${formatSeconds(d.maxHoldS)}`] : []),
    ...(d.rollbackOnHalt ? ["rollback on halt"] : []),
  ];
  const waves = d.waves.map((pct, i) => {
    const n = (status: string) => d.counts.filter((c) => c.wave === i && c.status === status).reduce((a, c) => a + c.devices, 0);
    const released = i <= d.wave ? (i === d.wave ? "current" : "released") : "waiting";
    return [i + 1, `${pct}%`, released, n("succeeded") + n("failed") + n("pending"), n("succeeded"), n("failed"), n("pending")];
  });
  const lines = [
    `rollout:  ${cell(d.id)}  ${d.state.toUpperCase()}`,
    `target:   version ${cell(d.targetVersion)} to ${audienceOf(d)}`,
    `wave:     ${d.wave + 1} of ${d.waves.length} (${d.waves[d.wave]}%), started ${cell(d.waveStartedAt)}`,
    `settings: ${settings.join(", ")}`,
    ...(d.reason ? [`reason:   ${cell(d.reason)}`] : []),
    "",
    table(["WAVE", "PERCENT", "STATE", "DEVICES", "SUCCEEDED", "FAILED", "PENDING"], waves),
  ];
  // The gateway lists at most ROLLOUT_LIST_MAX devices a list: say of how many, "(100 of 250)", or the
  // list reads as all of them; an older gateway says only that there are more.
  const some = (listed: number, all: number | undefined, more: boolean) =>
    all !== undefined ? (listed < all ? ` (${listed} of ${all})` : "") : more ? ` (the first ${listed}; more devices than that)` : "";
  if (d.holds.length)
    lines.push("", `Deferred installs${some(d.holds.length, d.heldDevices, d.moreHolds)}:`, table(["DEVICE", "WAVE", "BY", "UNTIL", "REPORTED"], d.holds.map((h) => [h.uuid, h.wave + 1, h.hold ? HOLD_KIND_NAMES[h.hold.kind] : undefined, h.hold?.until ?? "unknown", h.hold?.at])));
  // Pending devices whose clock has not started: no target of the version for their hardware id and tags yet.
  if (d.waiting.length) lines.push("", `Waiting for their target${some(d.waiting.length, d.waitingDevices, d.moreWaiting)}:`, table(["DEVICE", "WAVE", "WHY"], d.waiting.map((w) => [w.uuid, w.wave + 1, w.reason])));
  const failed = d.counts.filter((c) => c.status === "failed").reduce((a, c) => a + c.devices, 0);
  if (d.failures.length) lines.push("", `Failures${some(d.failures.length, failed, false)}:`, table(["DEVICE", "WAVE", "REASON"], d.failures.map((f) => [f.uuid, f.wave + 1, f.reason])));
  if (d.events.length)
    lines.push("", "Events (newest first):", table(["AT", "EVENT", "WAVE", "DEVICE", "REASON"], d.events.map((e) => [e.at, e.kind, e.wave === null ? null : e.wave + 1, e.deviceUuid, e.reason])));
  return lines.join("\n");
}

/** Each action's summary (`gateway rollouts --help`) and what it does, in which states (its own --help). */
const ACTION_HELP = {
  pause: [
    "Pause a running rollout: no wave advances until resumed; devices already released keep the target",
    [
      "Devices keep being evaluated while paused, and the released waves keep seeing the version (unlike a",
      "halt). Nobody times out while paused. Only a running rollout can be paused.",
    ],
  ],
  resume: [
    "Resume a paused or halted rollout (failures counted before a halt no longer count against it)",
    [
      "The current wave's clock starts again, for its soak and its pending timeout. Resuming a halted rollout",
      "accepts the failures so far: only new ones count against --max-failures from then on, and the",
      "released devices that had not updated see the version again. Refused while the TUF targets key is",
      "offline (nothing changes); pause and cancel are not, and reach the devices once the key is back.",
    ],
  ],
  advance: [
    "Release the next wave now, without waiting for the soak time",
    [
      "Works on a running or paused rollout (a paused one stays paused); a halted one must be resumed first.",
      "The last wave cannot be advanced: the rollout completes once that wave settles and soaks. Refused",
      "while the TUF targets key is offline (nothing changes).",
    ],
  ],
  cancel: [
    "Cancel a rollout: it ends where it stands and never releases its version to the devices not yet updated",
    [
      "Devices that installed the version keep it. Every other device, outside the released waves or released",
      "but not updated yet, is not offered the version, now or later. To ship it after all, create a new",
      "rollout of the version. A completed or cancelled rollout cannot be cancelled.",
    ],
  ],
} as const;

/** A command that takes one rollout id and prints the rollout it answers (show and the actions). */
export const rolloutCommand = (summary: string, call: (client: AdminClient, id: string) => Promise<RolloutDetail>, details: readonly string[] = []) =>
  defineCommand({
    summary,
    usage: "<id>",
    description: [...details, ...(details.length ? [""] : []), ADMIN_HELP].join("\n"),
    flags: { ...adminFlags, ...formatFlag },
    async run({ flags, args, out }) {
      const [id] = args;
      if (!id || args.length > 1) throw new UsageError("give exactly one rollout id (see `gateway rollouts list`)");
      const client = await adminClient(flags);
      out.result(await call(client, id), renderRollout);
    },
  });

/** The command of one rollout action: `rollouts pause|resume|advance|cancel ID`. */
export const rolloutActionCommand = (action: keyof typeof ACTION_HELP) =>
  rolloutCommand(ACTION_HELP[action][0], (client, id) => client.rolloutAction(id, action), [
    ...ACTION_HELP[action][1],
    "",
    "It prints the rollout as `gateway rollouts show` does.",
  ]);
