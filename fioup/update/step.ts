/**
 * An update is a list of steps (STYLE §4): each reads the saved state first,
 * so a rerun after a crash skips finished work, and saves its result before
 * the next step begins.
 *
 * @module
 */
import { currentUpdate, type UpdateContext } from "./context.ts";

export interface Step {
  /** For humans: "Fetching". */
  readonly name: string;
  run(ctx: UpdateContext): Promise<void>;
}

/** Runs the steps in order, telling the hooks as each begins. */
export async function runSteps(steps: readonly Step[], ctx: UpdateContext): Promise<void> {
  for (const step of steps) {
    ctx.signal?.throwIfAborted();
    if (ctx.updateId) ctx.hooks.onStep?.(step.name, currentUpdate(ctx));
    await step.run(ctx);
  }
}
