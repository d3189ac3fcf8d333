/**
 * Decides whether a started app is up (docs/formats.md, the start step): every service runs, or
 * is healthy where it has a healthcheck, or exited 0 (one-shot); restarting,
 * dead, unhealthy or exited non-zero is a failure (lib/compose/service-verdict.ts, the rule the
 * gateway's rollouts judge the reports by). The result doubles as the app's entry in POST /apps-states.
 *
 * @module
 */
import type { AppState, ServiceState } from "../../lib/api/device.ts";
import { judgeService, type ServiceVerdict } from "../../lib/compose/service-verdict.ts";
import { projectName } from "./compose.ts";
import type { ContainerInspect, DockerEngine } from "./docker-engine.ts";

export type Verdict = ServiceVerdict;

/** One container's state plus the verdict and, when failed, why. */
export interface ServiceReport {
  state: ServiceState;
  verdict: Verdict;
  reason?: string;
  containerId?: string;
  restartCount?: number;
}

/** A service of an installed app: its name and the pinned image it runs. */
export interface ServiceSpec {
  name: string;
  image?: string;
}

const LABEL_PROJECT = "com.docker.compose.project";
const LABEL_SERVICE = "com.docker.compose.service";
const LABEL_HASH = "com.docker.compose.config-hash";
/** Set on the containers of `compose run`: one-off commands, not replicas of the service. */
const LABEL_ONEOFF = "com.docker.compose.oneoff";

/**
 * What the last healthcheck said: its exit code and output (the last check with output, if
 * the very last printed nothing), so an unhealthy service's failure says why.
 */
function lastCheck(c: ContainerInspect): string {
  const log = c.State.Health?.Log ?? [];
  const last = log.at(-1);
  if (!last) return "";
  const said = [...log].reverse().find((l) => l.Output.trim() !== "");
  const out = said ? said.Output.trim().slice(-300) : "no output";
  return ` (last healthcheck exit code ${last.ExitCode}: ${out})`;
}

/**
 * One container judged by the rule the gateway applies to apps-states too (lib/compose/service-verdict.ts),
 * an unhealthy one with its last healthcheck's output. The Kanto agent judges its started containers with it.
 */
export function judgeContainer(c: ContainerInspect | undefined, svc: string): { verdict: Verdict; reason?: string } {
  if (!c) return judgeService({ name: svc, state: "missing" });
  const s = c.State;
  return judgeService({ name: svc, state: s.Status, health: s.Health?.Status, exitCode: s.ExitCode, error: s.Error || undefined, healthDetail: lastCheck(c) });
}

/**
 * Reads the state of every service of `app` (one report per declared service; the newest container wins).
 * A container a `compose run` left (no `--rm`) is no replica: its exit says nothing of the app, so
 * it is not judged (else one exited non-zero would make the app unhealthy until someone removed it).
 */
export async function serviceReports(engine: DockerEngine, app: string, services: ServiceSpec[]): Promise<ServiceReport[]> {
  const all = await engine.listContainers([`${LABEL_PROJECT}=${projectName(app)}`]);
  const containers = all.filter((c) => c.Labels[LABEL_ONEOFF] !== "True");
  const reports: ServiceReport[] = [];
  for (const svc of services) {
    const mine = containers.filter((c) => c.Labels[LABEL_SERVICE] === svc.name).sort((a, b) => b.Created - a.Created);
    if (mine.length === 0) {
      reports.push({ state: { name: svc.name, state: "missing", ...(svc.image ? { image: svc.image } : {}) }, verdict: "waiting", reason: `service "${svc.name}" has no container` });
      continue;
    }
    // A scaled service is only as good as its worst replica.
    let worst: ServiceReport | undefined;
    for (const summary of mine) {
      const c = await engine.inspectContainer(summary.Id);
      const { verdict, reason } = judgeContainer(c, svc.name);
      const state: ServiceState = {
        name: svc.name,
        state: c?.State.Status ?? summary.State,
        status: summary.Status,
        image: svc.image ?? summary.Image,
      };
      const hash = summary.Labels[LABEL_HASH];
      if (hash) state.hash = hash;
      const health = c?.State.Health?.Status;
      if (health) state.health = health;
      const r: ServiceReport = { state, verdict, containerId: summary.Id, restartCount: c?.RestartCount ?? 0 };
      if (reason) r.reason = reason;
      const rank = { failed: 2, waiting: 1, ok: 0 } as const;
      if (!worst || rank[r.verdict] > rank[worst.verdict]) worst = r;
    }
    reports.push(worst!);
  }
  return reports;
}

/** Shapes service reports into the apps-states entry of one app. */
export function appState(uri: string, reports: ServiceReport[]): AppState {
  return {
    uri,
    state: reports.length > 0 && reports.every((r) => r.verdict === "ok") ? "healthy" : "unhealthy",
    services: reports.map((r) => r.state),
  };
}

/** The defaults of a start's wait, shared with the Kanto agent's activation (fioup/agent/started.ts). */
export const WAIT_DEFAULTS = { timeoutMs: 120_000, settleMs: 1500, pollMs: 250 } as const;

export interface WaitOptions {
  /** Give up after this long. Default 120 s. */
  timeoutMs?: number;
  /** All services must stay ok this long before the app counts as up (catches crash-after-start). Default 1.5 s. */
  settleMs?: number;
  /** Poll interval. Default 250 ms. */
  pollMs?: number;
}

export interface WaitResult {
  ok: boolean;
  reports: ServiceReport[];
  error?: string;
}

/**
 * Polls until every service is ok for `settleMs`, any service fails (or
 * restarts), or the timeout passes. Never throws for an unhealthy app.
 * @throws {EngineError} only when the engine cannot be asked at all
 */
export async function waitForApp(engine: DockerEngine, app: string, services: ServiceSpec[], opts: WaitOptions = {}): Promise<WaitResult> {
  const timeoutMs = opts.timeoutMs ?? WAIT_DEFAULTS.timeoutMs;
  const settleMs = opts.settleMs ?? WAIT_DEFAULTS.settleMs;
  const pollMs = opts.pollMs ?? WAIT_DEFAULTS.pollMs;
  // The monotonic clock: NTP setting the wall clock mid-wait (a board without a battery clock
  // boots at its image's date) must neither end the wait at once nor stretch it by the step.
  const deadline = performance.now() + timeoutMs;
  const firstRestarts = new Map<string, number>();
  let okSince: number | undefined;
  for (;;) {
    const reports = await serviceReports(engine, app, services);
    for (const r of reports) {
      if (!r.containerId) continue;
      const first = firstRestarts.get(r.containerId);
      if (first === undefined) firstRestarts.set(r.containerId, r.restartCount ?? 0);
      else if ((r.restartCount ?? 0) > first && r.verdict !== "failed") {
        r.verdict = "failed";
        r.reason = `service "${r.state.name}" keeps restarting (restart count ${r.restartCount})`;
      }
    }
    const failed = reports.filter((r) => r.verdict === "failed");
    if (failed.length) {
      const why = await Promise.all(failed.map(async (r) => `${r.reason}${await logTail(engine, r.containerId)}`));
      return { ok: false, reports, error: `App "${app}" failed to start: ${why.join("; ")}` };
    }
    const now = performance.now();
    if (reports.every((r) => r.verdict === "ok")) {
      okSince ??= now;
      if (now - okSince >= settleMs) return { ok: true, reports };
    } else okSince = undefined;
    if (now >= deadline) {
      const pending = reports.filter((r) => r.verdict !== "ok").map((r) => r.reason ?? r.state.name);
      return { ok: false, reports, error: `App "${app}" did not start within ${timeoutMs} ms: ${pending.join("; ") || "services did not stay up"}` };
    }
    await Bun.sleep(Math.min(pollMs, Math.max(10, deadline - now)));
  }
}

/** ` (last output: ...)`, the container's last lines, said after why it failed; "" when it printed nothing. */
export async function logTail(engine: DockerEngine, id: string | undefined): Promise<string> {
  if (!id) return "";
  try {
    const text = (await engine.containerLogs(id, 5)).trim();
    return text ? ` (last output: ${text.slice(-500)})` : "";
  } catch {
    return "";
  }
}
