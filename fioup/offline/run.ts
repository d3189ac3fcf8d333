/**
 * What `fioup update --offline DIR` runs: one bundle through the update command's usual
 * machinery (lock, progress, summary, events queued and sent when the gateway answers), or,
 * with `--watch`, the watch loop until SIGTERM.
 *
 * @module
 */
import { join, resolve } from "node:path";
import type { Output } from "../../lib/cli/command.ts";
import { abortOnStopSignals } from "../../lib/cli/interrupt.ts";
import { InvalidBundleError, openBundle } from "../../lib/bundle/index.ts";
import { progressHooks } from "../progress.ts";
import { openSession } from "../session.ts";
import { runUpdateCommand } from "../update/run-command.ts";
import { offlinePlan } from "./plan.ts";
import { bundleInside, watchBundles } from "./watch.ts";

/** Applies the bundle in `dir`. @throws {InvalidBundleError} and whatever the update steps throw. */
export async function runOfflineUpdate(flags: { "sota-dir"?: string; force?: boolean }, dir: string, out: Output): Promise<void> {
  const bundle = await openBundle(resolve(dir)).catch(async (e) => {
    // A bundle one folder down (the stick's mount point given for the bundle's folder) is named, as watch mode names it.
    const inside = e instanceof InvalidBundleError && !(await Bun.file(join(resolve(dir), "index.json")).exists()) ? await bundleInside(resolve(dir)) : undefined;
    throw inside ? new InvalidBundleError(`${e.message}; ${inside}`) : e;
  });
  out.info(`offline bundle ${bundle.dir}: ${bundle.index.bundle.target}${bundle.index.bundle.from ? ` (made for devices on version ${bundle.index.bundle.from})` : ""}`);
  // Named in full in the refusals and in what resumes an interrupted update.
  await runUpdateCommand(flags, offlinePlan(bundle, { force: flags.force }), out, `update --offline ${dir}`);
}

/** Watches `dir` for bundles until SIGTERM or SIGINT. */
export async function runOfflineWatch(flags: { "sota-dir"?: string; force?: boolean }, dir: string, intervalSeconds: number, out: Output): Promise<void> {
  const s = openSession({ ...flags, requireRegistration: true, choosesTargets: true });
  const stop = abortOnStopSignals("stopped", "ignored");
  try {
    await watchBundles(s, resolve(dir), {
      signal: stop.signal,
      intervalMs: intervalSeconds * 1000,
      log: (l) => out.info(`${new Date().toISOString()} ${l}`),
      hooks: progressHooks(),
      hold: { force: flags.force },
    });
  } finally {
    stop.release();
    s.close();
  }
}
