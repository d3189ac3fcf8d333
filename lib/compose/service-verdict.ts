/**
 * Whether one service of a compose app is up, still coming up, or failed: fioup judges its
 * containers with it when it starts an app (fioup/runtime/health.ts), and the gateway judges the
 * services fioup reports in apps-states with it (gateway/rollouts/evaluate.ts). One rule for both
 * ends, or a device that fioup found up could fail its rollout (a one-shot that exited 0), or one
 * the gateway waits for could be failed by fioup.
 *
 * - ok: running with a passing or no healthcheck, or exited 0 (a one-shot: migrations, setup);
 * - waiting: no container yet, created, being removed (a replaced container), or its healthcheck
 *   still starting;
 * - failed: unhealthy, exited non-zero, restarting, dead, paused.
 *
 * @module
 */
import type { ServiceState } from "../api/device.ts";

export type ServiceVerdict = "ok" | "waiting" | "failed";

/** What a service's verdict depends on: docker's state and health status, and the exit code of an exited container. */
export interface ServiceFacts {
  name: string;
  /** running, exited, created, removing, restarting, dead, paused; missing: it has no container. */
  state: string;
  health?: string | undefined;
  /** The exit code of an exited container; undefined: not known. */
  exitCode?: number | undefined;
  /** docker's State.Error, when it gave one. */
  error?: string | undefined;
  /** Said after a health verdict: the last healthcheck's output. */
  healthDetail?: string | undefined;
}

/** One service's verdict and, unless it is ok, why. */
export function judgeService(s: ServiceFacts): { verdict: ServiceVerdict; reason?: string } {
  const svc = `service "${s.name}"`;
  switch (s.state) {
    case "missing":
      return { verdict: "waiting", reason: `${svc} has no container yet` };
    case "running": {
      const h = s.health;
      if (!h || h === "none" || h === "healthy") return { verdict: "ok" };
      if (h === "starting") return { verdict: "waiting", reason: `${svc} health is starting${s.healthDetail ?? ""}` };
      return { verdict: "failed", reason: `${svc} is ${h}${s.healthDetail ?? ""}` };
    }
    case "exited":
      if (s.exitCode === 0) return { verdict: "ok" };
      return { verdict: "failed", reason: `${svc} exited ${s.exitCode === undefined ? "(exit code not known)" : `with code ${s.exitCode}`}${s.error ? ` (${s.error})` : ""}` };
    case "created":
    case "removing":
      return { verdict: "waiting", reason: `${svc} is ${s.state}` };
    default: // restarting, dead, paused
      return { verdict: "failed", reason: `${svc} is ${s.state}${s.exitCode ? ` (last exit code ${s.exitCode})` : ""}` };
  }
}

/** The exit code in docker's status text (`Exited (0) 5 seconds ago`), which apps-states carries; undefined if it has none. */
export function exitCodeOfStatus(status: string | undefined): number | undefined {
  const m = /^Exited \((-?\d+)\)/.exec(status ?? "");
  return m ? Number(m[1]) : undefined;
}

/** {@link judgeService} of a service as fioup reports it in apps-states. */
export const judgeReportedService = (s: ServiceState) =>
  judgeService({ name: s.name, state: s.state, health: s.health, exitCode: exitCodeOfStatus(s.status) });
