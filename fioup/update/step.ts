/**
 * An update is a list of steps: each reads the saved state first,
 * so a rerun after a crash skips finished work, and saves its result before
 * the next step begins.
 *
 * @module
 */
import { currentUpdate, type UpdateContext } from "./context.ts";
import type { StepName } from "./states.ts";

export type { StepName };


export interface Step {
  /** Its one name: in progress lines, and in the database's update_steps ("fetch"). */
  readonly name: StepName;
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
