/**
 * `fioup daemon` on a device whose config has an `[mqtt]` table with a url
 * also runs the agent, in the same process: compose-app targets from the
 * gateway and Kanto desired states side by side (the agent treats every
 * compose container as a system container).
 *
 * One agent per state dir: when `fioup agent` already runs with it, the daemon
 * goes on without its own agent and says so, and looks again every
 * HELD_RETRY_MS: once that agent stops (say, an operator moved from the
 * separate unit to the daemon's), the daemon's own agent starts.
 *
 * An agent that stops on an error at its start (the engine unreachable, an
 * interrupted apply it cannot finish yet) is started again with backoff, as a
 * service manager restarts `fioup agent`: the daemon goes on polling meanwhile,
 * and a device whose dockerd comes up late still gets its agent.
 *
 * @module
 */
import type { Config } from "../config.ts";
import { backoffDelay, sleep } from "../../lib/net/backoff.ts";
import { FIOUP_VERSION } from "../version.ts";
import { agentConfig, hasMqttConfig } from "./config.ts";

/** How often the daemon looks whether the agent holding its state dir has stopped. */
export const HELD_RETRY_MS = 5_000;

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
      let failures = 0;
      let heldBy: number | undefined;
      while (!signal.aborted) {
        try {
          const onLocked = () => {
            if (heldBy !== undefined) log(`agent: the agent with PID ${heldBy} stopped: the daemon's own starts`);
            heldBy = undefined;
          };
          return await new Agent({ cfg: c, signal, version: FIOUP_VERSION, log: (l) => log(`agent: ${l}`), onLocked }).run();
        } catch (err) {
          if (signal.aborted) return;
          if (err instanceof AgentRunningError) {
            // Said once per agent holding the state dir; looked at again quietly.
            if (heldBy !== err.pid) log(`agent: not started, the daemon runs without it: ${err.message}; it starts its own once that agent stops`);
            heldBy = err.pid;
            await sleep(HELD_RETRY_MS, signal);
            continue;
          }
          const delay = backoffDelay(++failures, MIN_BACKOFF_MS, MAX_BACKOFF_MS);
          const doubles = delay === MIN_BACKOFF_MS ? ` (the delay doubles up to ${MAX_BACKOFF_MS / 1000} s)` : "";
          log(`agent: stopped: ${(err as Error).message}; starting it again in ${delay / 1000} s${doubles}`);
          await sleep(delay, signal);
        }
      }
    })
    .catch((err) => log(`agent: stopped: ${(err as Error).message}`));
}
