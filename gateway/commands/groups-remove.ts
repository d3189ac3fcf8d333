import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";
import { groupArgs } from "./_groups.ts";

export default defineCommand({
  summary: "Remove devices from a static group",
  usage: "<name> <uuid...>",
  description: ADMIN_HELP,
  flags: { ...adminFlags, ...formatFlag },
  async run({ flags, args, out }) {
    const { name, uuids } = groupArgs(args, "uuids");
    const client = await adminClient(flags);
    out.result(await client.changeGroupMembers(name, { remove: uuids }), (r) => `${r.name}: ${r.removed} removed, ${r.devices} devices`);
  },
});
