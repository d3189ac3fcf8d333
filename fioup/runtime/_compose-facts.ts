/**
 * What the runtime reads from an installed app's compose file beyond images:
 * each service's stop grace period (so a stop waits exactly as long as the app
 * asked, not Docker's 10 s default) and the external networks and volumes it
 * uses or creates (so apps that share them start in order, the rest at once);
 * and the services that have `profiles:`, which `compose up` does not start
 * (fioup enables no profile), so no one waits for their containers.
 *
 * @module
 */
import type { Document } from "yaml";

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
  /** Services with a `profiles:` list: compose creates no container for them unless a profile is enabled, and none is. */
  profiled: Set<string>;
}

/** Reads {@link ComposeFacts} from a parsed compose document. */
export function composeFacts(doc: Document, project: string): ComposeFacts {
  const js = (doc.toJS({ maxAliasCount: 1000 }) ?? {}) as Record<string, unknown>;
  const stopGrace = new Map<string, number>();
  const profiled = new Set<string>();
  const services = (js.services ?? {}) as Record<string, Record<string, unknown> | null>;
  for (const [name, svc] of Object.entries(services)) {
    const g = composeDurationSeconds(svc?.stop_grace_period);
    if (g !== undefined) stopGrace.set(name, g);
    if (Array.isArray(svc?.profiles) && svc.profiles.length > 0) profiled.add(name);
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
  return { stopGrace, creates, needs, profiled };
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
