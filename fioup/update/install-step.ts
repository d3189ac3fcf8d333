/**
 * The install step: load each app's images from the store into the engine and
 * extract its bundle (the runtime checks both). On failure: roll back.
 *
 * @module
 */
import { currentUpdate } from "./context.ts";
import { eventFor } from "./_events.ts";
import { planOf } from "./plan.ts";
import { rollback } from "./rollback.ts";
import { InvalidStateError, reached } from "./states.ts";
import type { Step } from "./step.ts";

export class InstallFailedError extends Error {
  override name = "InstallFailedError";
  constructor(target: string, cause: unknown) {
    super(`Cannot install ${target}; rolled back to the previous target`, { cause });
  }
}

export const installStep: Step = {
  name: "install",
  async run(ctx) {
    let u = currentUpdate(ctx);
    if (reached(u.state, "installed")) return;
    if (u.state !== "installing") throw new InvalidStateError("install", u.state);
    const plan = planOf(u);
    try {
      for (const app of plan.apps) {
        ctx.hooks.onInfo?.(`Installing ${app.name}`);
        await ctx.runtime.installApp({ name: app.name, uri: app.uri }, { signal: ctx.signal, onProgress: ctx.hooks.onInfo });
      }
    } catch (cause) {
      if (ctx.signal?.aborted) throw cause;
      await rollback(ctx, currentUpdate(ctx), "install", (cause as Error).message);
      throw new InstallFailedError(u.toTarget, cause);
    }
    u = currentUpdate(ctx);
    ctx.db.setState(u.id, "installed", { step: "install", events: [eventFor(u, "EcuInstallationApplied")] });
  },
};
