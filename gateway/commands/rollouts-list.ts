import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";
import { renderRolloutList } from "./_rollouts.ts";

export default defineCommand({
  summary: "List rollouts, newest first",
  description: ADMIN_HELP,
  flags: {
    ...adminFlags,
    active: { type: "boolean", description: "Only running, paused and halted rollouts" },
    limit: { type: "number", description: "At most this many", default: 100, min: 1, max: 1000, placeholder: "N" },
    ...formatFlag,
  },
  async run({ flags, out }) {
    const client = await adminClient(flags);
    out.result(await client.rollouts({ active: flags.active, limit: flags.limit }), (r) => renderRolloutList(r.rollouts));
  },
});
