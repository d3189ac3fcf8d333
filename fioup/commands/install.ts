import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { plans } from "../update/plans.ts";
import { forceHoldFlag, sotaDirFlag } from "./_flags.ts";
import { runUpdateCommand } from "./_run-update.ts";

export default defineCommand({
  summary: "Install the fetched update: load its images and extract its apps (not started)",
  description: "Waits for the maintenance window and for update locks (see `fioup lock`): exit 14 while they hold; --force installs anyway.",
  flags: { ...sotaDirFlag, ...formatFlag, ...forceHoldFlag },
  async run({ flags, out }) {
    await runUpdateCommand(flags, plans.install({ force: flags.force }), out, "install");
  },
});
