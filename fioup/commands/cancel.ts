import { defineCommand, formatFlag } from "../../lib/cli/command.ts";
import { progressHooks } from "../progress.ts";
import { reportAll } from "../report.ts";
import { openSession } from "../session.ts";
import { cancelUpdate } from "../update/cancel.ts";
import { sotaDirFlag } from "./_flags.ts";
import { renderSummary, summarize } from "../update/summary.ts";
import { takeUpdateLock } from "../update/update-lock.ts";

export default defineCommand({
  summary: "Cancel the pending update if its apps have not been started (restores the previous apps)",
  description:
    "Fetched blobs stay in the store. A cancel cut short (a power cut) leaves the update 'cancelling': running this again\n" +
    "(or 'fioup update', or the daemon's next cycle) finishes it, restoring the previous apps.",
  flags: { ...sotaDirFlag, ...formatFlag },
  async run({ flags, out }) {
    const s = openSession({ ...flags, requireRegistration: true });
    const lock = takeUpdateLock(s.lockPath, "cancel");
    try {
      const u = await cancelUpdate(s.ctx(progressHooks()));
      for (const e of await reportAll(s)) out.info(`warning: cannot report to the gateway: ${e.message}`);
      out.result(summarize(u), renderSummary);
    } finally {
      lock.release();
      s.close();
    }
  },
});
