import { MAX_DEVICE_LABELS } from "../../lib/api/admin.ts";
import { asUsage, UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { printable } from "../../lib/cli/printable.ts";
import { cell } from "../../lib/cli/table.ts";
import { InvalidFleetQueryError, checkLabel, parseLabel } from "../fleet/query.ts";
import { labelsText } from "../fleet/label-text.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";
import { onDevice } from "./_device-arg.ts";

export default defineCommand({
  summary: "Set or remove a device's labels (key=value), which groups and rollouts select devices by",
  usage: "<uuid> [key=value...]",
  description: [
    "Sets each key=value (adding or replacing that key) and removes each --remove key; other labels stay.",
    "Keys: lower-case letters, digits and . _ / - (at most 63, starting with a letter or digit); values: at",
    `most 128 characters. A device has at most ${MAX_DEVICE_LABELS} labels (more given here is bad usage, exit 2; a change`,
    "that would take the device past that is refused, exit 3). Only the admin sets labels: a device never changes them.",
    "",
    "Example: gateway devices label 3f1c... region=eu site=berlin-2 --remove ring",
    "",
    ADMIN_HELP,
  ].join("\n"),
  flags: {
    ...adminFlags,
    remove: { type: "strings", description: "Remove this label key", placeholder: "KEY" },
    ...formatFlag,
  },
  async run({ flags, args, out }) {
    const [uuid, ...assignments] = args;
    if (!uuid) throw new UsageError("give a device uuid, then key=value labels and/or --remove KEY");
    if (!assignments.length && !flags.remove.length) throw new UsageError("nothing to change: give key=value labels or --remove KEY");
    const pairs = asUsage([InvalidFleetQueryError], () => assignments.map(parseLabel));
    // "a=1 a=2": the last one silently won; the user meant one of them.
    const twice = pairs.find(([k, v], i) => pairs.some(([k2, v2], j) => j < i && k2 === k && v2 !== v));
    if (twice) throw new UsageError(`label "${twice[0]}" is given two values: give it one`);
    const set = Object.fromEntries(pairs);
    // The gateway takes at most MAX_DEVICE_LABELS in a request, and a device has at most as many.
    const count = Object.keys(set).length;
    if (count > MAX_DEVICE_LABELS) throw new UsageError(`${count} labels given: a device has at most ${MAX_DEVICE_LABELS}`);
    const remove = [...new Set(flags.remove)];
    if (remove.length > MAX_DEVICE_LABELS) throw new UsageError(`${remove.length} --remove given: at most ${MAX_DEVICE_LABELS} at once (a device has at most ${MAX_DEVICE_LABELS} labels)`);
    asUsage([InvalidFleetQueryError], () => flags.remove.forEach((k) => checkLabel(k, "")));
    const both = flags.remove.find((k) => Object.hasOwn(set, k));
    if (both !== undefined) throw new UsageError(`label "${both}" is both set and removed`);
    const client = await adminClient(flags);
    const d = await onDevice(client, uuid, (u) => client.setDeviceLabels(u, { set, remove }));
    out.result(d, (r) => `${cell(r.uuid)}: labels ${printable(labelsText(r.labels)) || "(none)"}`);
  },
});
