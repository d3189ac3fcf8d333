import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { plans } from "../update/plans.ts";
import { START_TIMEOUT_MS } from "../update/start-step.ts";
import { sotaDirFlag } from "./_flags.ts";
import { runUpdateCommand } from "../update/run-command.ts";

export default defineCommand({
  summary: "Start the installed update's apps and complete it (rolls back on failure)",
  description:
    `Waits until each started app runs (healthy, where it has a healthcheck), at most ${START_TIMEOUT_MS / 1000} s; Ctrl-C or SIGTERM ends the wait,\n` +
    "the update stays 'starting' and this resumes it. Before the install it exits 10 naming the command that comes next.",
  flags: { ...sotaDirFlag, ...formatFlag },
  async run({ flags, out }) {
    await runUpdateCommand(flags, plans.start(), out, "start");
  },
});
