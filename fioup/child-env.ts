/**
 * The environment fioup gives the processes it starts (docker compose, docker-compose). The
 * daemon runs with JavaScriptCore options in its environment (lib/device/fioup.service sets
 * `BUN_JSC_useBaselineJIT=0` to save memory); those are for fioup's own runtime, and a child that is a
 * Bun or JSC program (or starts one) must not inherit them. Everything else passes through.
 *
 * @module
 */

/** Environment variables read by the JavaScriptCore inside Bun; fioup's own, never a child's. */
const JSC_OPTION = /^BUN_JSC_/;

/**
 * `env` (default: this process's environment) without `BUN_JSC_*`, with `extra` on top.
 *
 * @example
 * ```ts
 * Bun.spawn({ cmd: ["docker", "compose", "version"], env: childEnv({ NO_COLOR: "1" }) });
 * ```
 */
export function childEnv(extra: Record<string, string> = {}, env: Record<string, string | undefined> = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && !JSC_OPTION.test(k)) out[k] = v;
  return Object.assign(out, extra);
}
