/**
 * Puts the previous target's apps back (docs/formats.md; done better than Foundries' fioup: at
 * once, no retries) for the apps an update touched: stop the new ones, remove
 * those the previous target did not have, reinstall the previous ones from the
 * store where they are not installed as they were (their blobs are only pruned
 * after an update completes) and start them. Apps the update never touched
 * kept running and are left alone. Used by rollback and cancel.
 *
 * @module
 */
import type { Target } from "../../lib/api/index.ts";
import type { UpdateContext } from "./context.ts";
import { wantedApps } from "./context.ts";

export interface RestoreResult {
  restoredTo?: string;
  ok: boolean;
  error?: string;
}

/** Restores the apps named in `touched` to what `previous` had. */
export async function restorePrevious(ctx: UpdateContext, touched: string[], previous: Target | undefined): Promise<RestoreResult> {
  const prevApps = wantedApps(ctx.cfg, previous).filter((a) => touched.includes(a.name));
  const prevNames = new Set(wantedApps(ctx.cfg, previous).map((a) => a.name));
  try {
    await ctx.runtime.stopApps(touched);
    for (const name of touched) if (!prevNames.has(name)) await ctx.runtime.removeApp(name);
    // An app still installed as it was needs no reinstall (and no disk space).
    for (const app of prevApps) if (!(await ctx.runtime.isInstalled(app))) await ctx.runtime.installApp(app, { signal: ctx.signal });
    const results = prevApps.length ? await ctx.runtime.startApps(prevApps.map((a) => a.name), { timeoutMs: 120_000 }) : [];
    const bad = results.filter((r) => !r.ok);
    if (bad.length) return { restoredTo: previous?.name, ok: false, error: bad.map((r) => `${r.name}: ${r.error ?? "not running"}`).join("; ") };
    return { restoredTo: previous?.name, ok: true };
  } catch (e) {
    return { restoredTo: previous?.name, ok: false, error: (e as Error).message };
  }
}
