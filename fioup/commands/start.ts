import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { plans } from "../update/plans.ts";
import { sotaDirFlag } from "./_flags.ts";
import { runUpdateCommand } from "./_run-update.ts";

export default defineCommand({
  summary: "Start the installed update's apps and complete it (rolls back on failure)",
  flags: { ...sotaDirFlag, ...formatFlag },
  async run({ flags, out }) {
    await runUpdateCommand(flags, plans.start(), out, "start");
  },
});
