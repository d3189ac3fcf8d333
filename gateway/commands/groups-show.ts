import { DeviceUuid } from "../../lib/api/device.ts";
import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { checkFlagValues } from "../../lib/cli/flag-values.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";
import { groupArgs, renderGroup } from "./_groups.ts";

export default defineCommand({
  summary: "Show a group and its devices (a dynamic group: the devices its query matches now)",
  usage: "<name>",
  description: ADMIN_HELP,
  flags: {
    ...adminFlags,
    limit: { type: "number", description: "At most this many devices", default: 1000, min: 1, max: 10000, placeholder: "N" },
    after: { type: "string", description: "Start after this uuid (paging)", placeholder: "UUID" },
    ...formatFlag,
  },
  async run({ flags, args, out }) {
    const { name } = groupArgs(args, "none");
    checkFlagValues("--after", DeviceUuid, flags.after ? [flags.after] : []); // else a typo pages past every device
    const client = await adminClient(flags);
    out.result(await client.group(name, { limit: flags.limit, ...(flags.after ? { after: flags.after } : {}) }), renderGroup);
  },
});
