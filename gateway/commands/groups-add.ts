import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";
import { groupArgs } from "./_groups.ts";

export default defineCommand({
  summary: "Add devices to a static group (every uuid must be a registered device)",
  usage: "<name> <uuid...>",
  description: ADMIN_HELP,
  flags: { ...adminFlags, ...formatFlag },
  async run({ flags, args, out }) {
    const { name, uuids } = groupArgs(args, "uuids");
    const client = await adminClient(flags);
    out.result(await client.changeGroupMembers(name, { add: uuids }), (r) => `${r.name}: ${r.added} added, ${r.devices} devices`);
  },
});
