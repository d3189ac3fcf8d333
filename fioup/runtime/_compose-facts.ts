/**
 * What the runtime reads from an installed app's compose file beyond images:
 * each service's stop grace period (so a stop waits exactly as long as the app
 * asked, not Docker's 10 s default) and the external networks and volumes it
 * uses or creates (so apps that share them start in order, the rest at once);
 * and the services `compose up` does not start, so no one waits for their
 * containers and the app's state leaves them out.
 *
 * Those are the services behind profiles none of which is enabled. fioup passes
 * no `--profile`, so compose enables what `COMPOSE_PROFILES` names (a comma-separated
 * list, `*` for every profile), taken from its environment or else from the app's
 * `.env` beside the compose file. fioup keeps `COMPOSE_PROFILES` out of compose's
 * environment (fioup/child-env.ts), so the app's `.env` decides, and the facts read
 * it as compose does. Services a started one `depends_on` need no more: compose
 * refuses to start an app whose started service depends on one it leaves out.
 * Compose v1 (1.29) neither trims the names nor knows `*` (a profile named
 * `*` enables nothing there): read so for v1, as the runtime knows which it runs;
 * a list written `a,b` means the same to both.
 *
 * A service scaled to nothing (`scale: 0`, or `deploy: { replicas: 0 }`) gets no container
 * from `compose up` either, on purpose: it is left out the same way, not waited for.
 *
 * @module
 */
import type { Document } from "yaml";
import { InterpolationError, parseDotEnv } from "../../lib/compose/interpolate.ts";

/** Seconds in a compose duration (`1s`, `1m30s`, `1.5s`, `500ms`, `2h`), or undefined if unreadable. */
export function composeDurationSeconds(v: unknown): number | undefined {
  if (typeof v === "number" && Number.isFinite(v) && v >= 0) return v;
  if (typeof v !== "string") return undefined;
  const re = /(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)/g;
  const text = v.trim();
  let total = 0;
  let consumed = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const n = Number(m[1]);
    total += n * { h: 3600, m: 60, s: 1, ms: 1e-3, us: 1e-6, ns: 1e-9 }[m[2] as "h"];
    consumed += m[0].length;
  }
  return consumed === text.length && consumed > 0 ? total : undefined;
}

export interface ComposeFacts {
  /** Service name → stop grace period in seconds (absent = the engine's default). */
  stopGrace: Map<string, number>;
  /** Names of networks and volumes this app creates (`name:` given, or `<project>_<key>`). */
  creates: Set<string>;
  /** Names of external networks and volumes this app needs to exist. */
  needs: Set<string>;
  /** Services with a `profiles:` list none of which is enabled, or scaled to 0: `compose up` creates no container for them. */
  notStarted: Set<string>;
  /** The fixed names (`container_name:`) of the services `compose up` creates. */
  containerNames: Set<string>;
}

/**
 * The profiles `compose up` enables for an app: `COMPOSE_PROFILES` of `env` (the environment
 * compose runs with) if set, else of the app's `.env` (its text; undefined when there is none),
 * split at commas and trimmed. A variable the `.env` names and `env` lacks reads as empty, as in
 * compose (publish refuses it, so {@link parseDotEnv} throws); a `.env` that does not parse
 * otherwise enables none, and compose refuses to start the app.
 *
 * @example
 * ```ts
 * enabledProfiles("COMPOSE_PROFILES=debug, metrics\n", "app/.env", {}); // ["debug", "metrics"]
 * enabledProfiles("COMPOSE_PROFILES=debug\n", "app/.env", { COMPOSE_PROFILES: "" }); // []
 * ```
 */
export function enabledProfiles(dotEnv: string | undefined, file: string, env: Record<string, string | undefined>, v1 = false): string[] {
  let value = env.COMPOSE_PROFILES;
  const outer = { ...env };
  while (value === undefined && dotEnv !== undefined) {
    try {
      value = parseDotEnv(dotEnv, file, outer).COMPOSE_PROFILES ?? "";
    } catch (err) {
      if (!(err instanceof InterpolationError) || !err.variable || Object.hasOwn(outer, err.variable)) break;
      outer[err.variable] = "";
    }
  }
  const names = (value ?? "").split(",");
  return v1 ? names.filter((p) => p !== "" && p !== "*") : names.map((p) => p.trim()).filter((p) => p !== "");
}

/** A count of 0 as compose reads one (a number, or a string after interpolation). */
function isZero(v: unknown): boolean {
  return v === 0 || (typeof v === "string" && v.trim() !== "" && Number(v) === 0);
}

/** Reads {@link ComposeFacts} from a parsed compose document, with `profiles` enabled ({@link enabledProfiles}). */
export function composeFacts(doc: Document, project: string, profiles: string[] = []): ComposeFacts {
  const js = (doc.toJS({ maxAliasCount: 1000 }) ?? {}) as Record<string, unknown>;
  const stopGrace = new Map<string, number>();
  const notStarted = new Set<string>();
  const enabled = (p: unknown) => profiles.includes("*") || profiles.includes(String(p));
  const services = (js.services ?? {}) as Record<string, Record<string, unknown> | null>;
  for (const [name, svc] of Object.entries(services)) {
    const g = composeDurationSeconds(svc?.stop_grace_period);
    if (g !== undefined) stopGrace.set(name, g);
    if (Array.isArray(svc?.profiles) && svc.profiles.length > 0 && !svc.profiles.some(enabled)) notStarted.add(name);
    const deploy = svc?.deploy as Record<string, unknown> | null | undefined;
    if (isZero(svc?.scale) || isZero(deploy?.replicas)) notStarted.add(name);
  }
  const creates = new Set<string>();
  const needs = new Set<string>();
  for (const kind of ["networks", "volumes"] as const) {
    for (const [key, def] of Object.entries((js[kind] ?? {}) as Record<string, Record<string, unknown> | null>)) {
      const ext = def?.external;
      const extName = typeof ext === "object" && ext && typeof (ext as { name?: unknown }).name === "string" ? (ext as { name: string }).name : undefined;
      const name = typeof def?.name === "string" ? def.name : undefined;
      if (ext) needs.add(extName ?? name ?? key);
      else creates.add(name ?? `${project}_${key}`);
    }
  }
  const containerNames = new Set<string>();
  for (const [name, svc] of Object.entries(services)) {
    if (typeof svc?.container_name === "string" && svc.container_name && !notStarted.has(name)) containerNames.add(svc.container_name);
  }
  return { stopGrace, creates, needs, notStarted, containerNames };
}

/**
 * Groups apps into waves: every app of a wave can start at once, and an app
 * that needs an external network or volume another app creates comes in a
 * later wave than that app. A cycle (or a need nobody creates) does not block:
 * those apps go in the last wave.
 */
export function startWaves<T extends { name: string; facts: ComposeFacts }>(apps: T[]): T[][] {
  const waves: T[][] = [];
  const done = new Set<string>();
  let left = [...apps];
  while (left.length) {
    const creatorsLeft = (need: string, self: T) => left.some((o) => o !== self && o.facts.creates.has(need));
    const wave = left.filter((a) => ![...a.facts.needs].some((n) => creatorsLeft(n, a)));
    if (wave.length === 0) {
      waves.push(left);
      break;
    }
    waves.push(wave);
    for (const a of wave) done.add(a.name);
    left = left.filter((a) => !done.has(a.name));
  }
  return waves;
}
