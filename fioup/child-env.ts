/**
 * The environment fioup gives the processes it starts (docker compose, docker-compose). The
 * daemon runs with JavaScriptCore options in its environment (lib/device/fioup.service sets
 * `BUN_JSC_useBaselineJIT=0` to save memory); those are for fioup's own runtime, and a child that is a
 * Bun or JSC program (or starts one) must not inherit them. Nor does compose get the daemon's
 * `COMPOSE_PROFILES`, `COMPOSE_ENV_FILES` or `COMPOSE_DISABLE_ENV_FILE`: they would choose which
 * services of every app run (compose reads the first before the app's `.env`, and the others stop
 * it reading `.env`),
 * while which profiles an app enables is its author's choice, made in the app's `.env` and the
 * same on every device; the runtime reads that `.env` to know which services compose starts.
 * Everything else passes through.
 *
 * @module
 */

/** Environment variables read by the JavaScriptCore inside Bun; fioup's own, never a child's. */
const JSC_OPTION = /^BUN_JSC_/;

/** Compose settings that would pick an app's services from the device's environment, not from the app. */
const APP_CHOICE = new Set(["COMPOSE_PROFILES", "COMPOSE_ENV_FILES", "COMPOSE_DISABLE_ENV_FILE"]);

/**
 * `env` (default: this process's environment) without `BUN_JSC_*` and the compose settings of
 * APP_CHOICE, with `extra` on top.
 *
 * @example
 * ```ts
 * Bun.spawn({ cmd: ["docker", "compose", "version"], env: childEnv({ NO_COLOR: "1" }) });
 * ```
 */
export function childEnv(extra: Record<string, string> = {}, env: Record<string, string | undefined> = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && !JSC_OPTION.test(k) && !APP_CHOICE.has(k)) out[k] = v;
  return Object.assign(out, extra);
}
