import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { plans } from "../update/plans.ts";
import { forceHoldFlag, sotaDirFlag } from "./_flags.ts";
import { runUpdateCommand } from "../update/run-command.ts";

export default defineCommand({
  summary: "Install the fetched update: load its images and extract its apps (not started)",
  description:
    "Installs only inside the maintenance window (with a window: once the clock is set) and while no update lock is held (see `fioup lock`):\n" +
    "otherwise it exits 14 at once, saying until when, and the update stays fetched (the daemon waits for the hold to end); --force installs anyway. Then run 'fioup start'.\n" +
    "Before the fetch ended it exits 10 naming the command that comes next; on an update already installed (or starting) it changes nothing\n" +
    "and exits 0, printing where the update stands.",
  flags: { ...sotaDirFlag, ...formatFlag, ...forceHoldFlag },
  async run({ flags, out }) {
    await runUpdateCommand(flags, plans.install({ force: flags.force }), out, "install");
  },
});
