import { GroupName } from "../../lib/api/admin.ts";
import { checkFlagValues } from "../../lib/cli/flag-values.ts";
import { asUsage, UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { InvalidFleetQueryError, parseFleetQuery } from "../fleet/query.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";
import { checkDeviceArgs } from "./_device-arg.ts";
import { renderGroup } from "./_groups.ts";

export default defineCommand({
  summary: "Create a device group: static (a list of devices) or dynamic (--query, evaluated when used)",
  usage: "<name> [uuid...]",
  description: [
    "A static group holds the devices you add (here or with `gateway groups add`). A dynamic group holds",
    "whichever devices match its query at the moment it is used (a rollout takes its devices when created).",
    "",
    "Query terms, separated by spaces, all must match:",
    "  key=value     the device's label key has this value (gateway devices label)",
    "  tag=T         the device has tag T (repeatable)",
    "  hwid=H        its hardware id is H (also hardware-id=H)",
    "  name~text     its name contains text (case-insensitive)",
    'Quote values with spaces: site="Berlin 2".',
    "",
    'Example: gateway groups create eu-kiosks --query "region=eu tag=prod name~kiosk"',
    "",
    ADMIN_HELP,
  ].join("\n"),
  flags: {
    ...adminFlags,
    query: { type: "string", description: "Make a dynamic group with this query", placeholder: "QUERY" },
    ...formatFlag,
  },
  async run({ flags, args, out }) {
    const [name, ...devices] = args;
    if (!name) throw new UsageError("give a group name");
    checkFlagValues("group name", GroupName, [name]);
    if (flags.query !== undefined && devices.length) throw new UsageError("a dynamic group (--query) takes no device list");
    if (flags.query !== undefined) asUsage([InvalidFleetQueryError], () => parseFleetQuery(flags.query!));
    await checkDeviceArgs("device uuid", devices, () => adminClient(flags));
    const client = await adminClient(flags);
    const g = await client.createGroup({ name, ...(flags.query !== undefined ? { query: flags.query } : {}), ...(devices.length ? { devices } : {}) });
    out.result(g, renderGroup);
  },
});
