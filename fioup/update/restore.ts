/**
 * Puts the previous target's apps back (docs/formats.md; done better than Foundries' fioup: at
 * once, no retries) for the apps an update touched: stop the new ones, remove
 * those the previous target did not have, reinstall the previous ones from the
 * store where they are not installed as they were (their blobs are only pruned
 * after an update completes) and start them; an app that cannot be reinstalled fails the
 * restore, after the others are back and started. Apps the update never touched
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
    // An app still installed as it was needs no reinstall (and no disk space). One that cannot be
    // reinstalled (its blobs gone, a full disk) fails the rollback, but not the others: each that
    // can is put back and started, so as little as possible stays down until the next run.
    const failed: string[] = [];
    const back: string[] = [];
    for (const app of prevApps) {
      try {
        if (!(await ctx.runtime.isInstalled(app))) await ctx.runtime.installApp(app, { signal: ctx.signal });
        back.push(app.name);
      } catch (e) {
        if (ctx.signal?.aborted) throw e;
        failed.push(`${app.name}: cannot reinstall: ${(e as Error).message}`);
      }
    }
    const results = back.length ? await ctx.runtime.startApps(back, { timeoutMs: 120_000 }) : [];
    failed.push(...results.filter((r) => !r.ok).map((r) => `${r.name}: ${r.error ?? "not running"}`));
    if (failed.length) return { restoredTo: previous?.name, ok: false, error: failed.join("; ") };
    return { restoredTo: previous?.name, ok: true };
  } catch (e) {
    return { restoredTo: previous?.name, ok: false, error: (e as Error).message };
  }
}
