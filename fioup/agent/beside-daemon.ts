/**
 * `fioup daemon` on a device whose config has an `[mqtt]` table with a url
 * also runs the agent, in the same process: compose-app targets from the
 * gateway and Kanto desired states side by side (the agent treats every
 * compose container as a system container).
 *
 * One agent per state dir: when `fioup agent` already runs with it, the daemon
 * goes on without its own agent and says so.
 *
 * @module
 */
import type { Config } from "../config.ts";
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
    .then(({ Agent, AgentRunningError }) =>
      new Agent({ cfg: c, signal, version: FIOUP_VERSION, log: (l) => log(`agent: ${l}`) }).run().catch((err) => {
        if (!(err instanceof AgentRunningError)) throw err;
        log(`agent: not started, the daemon runs without it: ${err.message}`);
      }),
    )
    .catch((err) => log(`agent: stopped: ${(err as Error).message}`));
}
