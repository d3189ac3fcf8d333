import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";
import { groupArgs } from "./_groups.ts";

export default defineCommand({
  summary: "Delete a group (rollouts made from it keep their devices)",
  usage: "<name>",
  description: ADMIN_HELP,
  flags: { ...adminFlags, ...formatFlag },
  async run({ flags, args, out }) {
    const { name } = groupArgs(args, "none");
    const client = await adminClient(flags);
    out.result(await client.deleteGroup(name), (r) => `group ${r.name} deleted`);
  },
});
