import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { plans } from "../update/plans.ts";
import { sotaDirFlag, versionArg } from "./_flags.ts";
import { runUpdateCommand } from "../update/run-command.ts";

export default defineCommand({
  summary: "Check for the newest target (or the named version) and download what it needs",
  usage: "[version]",
  description:
    "Only blobs missing from the store are downloaded; partial downloads resume. Then run 'fioup install'.\n" +
    "With an update in progress it goes on with that one; once it is fetched (or further) this changes nothing and exits 0,\n" +
    "printing where the update stands. A cancel cut short is finished first (see 'fioup cancel').",
  flags: { ...sotaDirFlag, ...formatFlag },
  async run({ flags, args, out }) {
    await runUpdateCommand(flags, plans.fetch({ version: versionArg(args) }), out, "fetch");
  },
});
