import { defineCommand, formatFlag, UsageError } from "../../lib/cli/command.ts";
import { plans } from "../update/plans.ts";
import { forceHoldFlag, sotaDirFlag } from "./_flags.ts";
import { runUpdateCommand } from "./_run-update.ts";

export default defineCommand({
  summary: "Check, fetch, install and start the newest target (or the named version)",
  usage: "[version]",
  description:
    "Resumes an interrupted update first. A named version may be older than the running one (an explicit downgrade).\nExit 3 when there is nothing newer.\nThe install waits for the maintenance window and for update locks (see `fioup lock`): the update is fetched, then fioup exits 14; --force installs anyway.",
  flags: { ...sotaDirFlag, ...formatFlag, ...forceHoldFlag },
  async run({ flags, args, out }) {
    if (args.length > 1) throw new UsageError("expected at most one version");
    await runUpdateCommand(flags, plans.update({ version: args[0] }, { force: flags.force }), out);
  },
});
