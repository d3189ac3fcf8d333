/**
 * `fioup daemon` on a device whose config has an `[mqtt]` table with a url
 * also runs the agent, in the same process: compose-app targets from the
 * gateway and Kanto desired states side by side (the agent treats every
 * compose container as a system container).
 *
 * One agent per state dir: when `fioup agent` already runs with it, the daemon
 * goes on without its own agent and says so.
 *
 * An agent that stops on an error at its start (the engine unreachable, an
 * interrupted apply it cannot finish yet) is started again with backoff, as a
 * service manager restarts `fioup agent`: the daemon goes on polling meanwhile,
 * and a device whose dockerd comes up late still gets its agent.
 *
 * @module
 */
import type { Config } from "../config.ts";
import { sleep } from "../push.ts";
import { FIOUP_VERSION } from "../version.ts";
import { agentConfig, hasMqttConfig } from "./config.ts";

/**
 * Starts the agent when the config asks for it; resolves when `signal` aborts and the agent has stopped.
 * @throws {ConfigError} A wrong `[mqtt]` table (at once, before the daemon starts).
 */
export function startAgentIfConfigured(cfg: Config, signal: AbortSignal, log: (line: string) => void): Promise<void> | undefined {
  if (!hasMqttConfig(cfg)) return undefined;
  const c = agentConfig(cfg);
  // The agent and its MQTT client load only here: a daemon without [mqtt] never holds their code.
  return import("./agent.ts")
    .then(async ({ Agent, AgentRunningError, MIN_BACKOFF_MS, MAX_BACKOFF_MS }) => {
      for (let delay = MIN_BACKOFF_MS; !signal.aborted; delay = Math.min(MAX_BACKOFF_MS, delay * 2)) {
        try {
          return await new Agent({ cfg: c, signal, version: FIOUP_VERSION, log: (l) => log(`agent: ${l}`) }).run();
        } catch (err) {
          if (err instanceof AgentRunningError) return log(`agent: not started, the daemon runs without it: ${err.message}`);
          if (signal.aborted) return;
          const doubles = delay === MIN_BACKOFF_MS ? ` (the delay doubles up to ${MAX_BACKOFF_MS / 1000} s)` : "";
          log(`agent: stopped: ${(err as Error).message}; starting it again in ${delay / 1000} s${doubles}`);
          await sleep(delay, signal);
        }
      }
    })
    .catch((err) => log(`agent: stopped: ${(err as Error).message}`));
}
