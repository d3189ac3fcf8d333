import { UsageError, defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { ADMIN_HELP, adminClient, adminFlags } from "./_admin-client.ts";
import { renderRollout } from "./_rollouts.ts";

export default defineCommand({
  summary: "Show a rollout: state and why, devices per wave and status, deferred installs, failures, recent events",
  usage: "<id>",
  description: ADMIN_HELP,
  flags: { ...adminFlags, ...formatFlag },
  async run({ flags, args, out }) {
    const [id] = args;
    if (!id || args.length > 1) throw new UsageError("give exactly one rollout id (see `gateway rollouts list`)");
    const client = await adminClient(flags);
    out.result(await client.rollout(id), renderRollout);
  },
});
