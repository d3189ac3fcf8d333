import { defineCommand } from "../../lib/cli/command.ts";
import { abortOnStopSignals } from "../../lib/cli/interrupt.ts";
import { startAgentIfConfigured } from "../agent/beside-daemon.ts";
import { runDaemon, takeDaemonLock } from "../daemon.ts";
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
    let lock;
    try {
      lock = takeDaemonLock(s);
    } catch (e) {
      s.close();
      throw e;
    }
    const stop = abortOnStopSignals("SIGTERM", "ignored");
    const hooks = progressHooks();
    const log = (l: string) => {
      hooks.endLine();
      out.info(`${new Date().toISOString()} ${l}`);
    };
    // With an [mqtt] table the Kanto-compatible agent runs beside the polling loop, and stops with it
    // (on the signal, or when the loop ends by itself: --cycles).
    const loopEnded = new AbortController();
    const agent = startAgentIfConfigured(s.cfg, AbortSignal.any([stop.signal, loopEnded.signal]), log);
    try {
      await runDaemon(s, {
        signal: stop.signal,
        log,
        hooks,
        cycles: flags.cycles,
      });
    } finally {
      loopEnded.abort(new Error("daemon stopped"));
      await agent;
      stop.release();
      lock.release();
      s.close();
    }
  },
});
