import { defineCommand, formatFlag, UsageError } from "../../lib/cli/command.ts";
import { plans } from "../update/plans.ts";
import { sotaDirFlag } from "./_flags.ts";
import { runUpdateCommand } from "./_run-update.ts";

export default defineCommand({
  summary: "Check for the newest target (or the named version) and download what it needs",
  usage: "[version]",
  description: "Only blobs missing from the store are downloaded; partial downloads resume. Then run 'fioup install'.",
  flags: { ...sotaDirFlag, ...formatFlag },
  async run({ flags, args, out }) {
    if (args.length > 1) throw new UsageError("expected at most one version");
    await runUpdateCommand(flags, plans.fetch({ version: args[0] }), out);
  },
});
