import { defineCommand, formatFlag, UsageError } from "../../lib/cli/command.ts";
import { plans } from "../update/plans.ts";
import { sotaDirFlag } from "./_flags.ts";
import { runUpdateCommand } from "./_run-update.ts";

export default defineCommand({
  summary: "Install the fetched update: load its images and extract its apps (not started)",
  flags: { ...sotaDirFlag, ...formatFlag },
  async run({ flags, args, out }) {
    if (args.length) throw new UsageError("install takes no arguments");
    await runUpdateCommand(flags, plans.install(), out);
  },
});
