import { defineCommand } from "../../lib/cli/command.ts";
import { startAgentIfConfigured } from "../agent/beside-daemon.ts";
import { runDaemon } from "../daemon.ts";
import { progressHooks } from "../progress.ts";
import { openSession } from "../session.ts";
import { sotaDirFlag } from "./_flags.ts";

export default defineCommand({
  summary: "Poll for updates and apply them, forever (SIGTERM stops cleanly; the next start resumes)",
  flags: {
    ...sotaDirFlag,
    cycles: { type: "number", min: 1, description: "Stop after N polling cycles (for tests)", placeholder: "N" },
  },
  async run({ flags, out }) {
    const s = openSession({ ...flags, requireRegistration: true, choosesTargets: true });
    const ac = new AbortController();
    const stop = () => ac.abort(new Error("SIGTERM"));
    process.on("SIGTERM", stop);
    process.on("SIGINT", stop);
    const hooks = progressHooks();
    const log = (l: string) => {
      hooks.endLine();
      out.info(`${new Date().toISOString()} ${l}`);
    };
    // With an [mqtt] table the Kanto-compatible agent runs beside the polling loop.
    const agent = startAgentIfConfigured(s.cfg, ac.signal, log);
    try {
      await runDaemon(s, {
        signal: ac.signal,
        log,
        hooks,
        cycles: flags.cycles,
      });
    } finally {
      ac.abort(new Error("daemon stopped"));
      await agent;
      process.off("SIGTERM", stop);
      process.off("SIGINT", stop);
      s.close();
    }
  },
});
