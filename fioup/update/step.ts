/**
 * An update is a list of steps: each reads the saved state first,
 * so a rerun after a crash skips finished work, and saves its result before
 * the next step begins.
 *
 * @module
 */
import { currentUpdate, type UpdateContext } from "./context.ts";
import { ended, type StepName } from "./states.ts";

export type { StepName };

export interface Step {
  /** Its one name: in progress lines, and in the database's update_steps ("fetch"). */
  readonly name: StepName;
  run(ctx: UpdateContext): Promise<void>;
}

/**
 * Runs the steps in order, telling the hooks as each begins. An update a step ended without
 * failing ends the run: the init step finishing a cancel cut short leaves it canceled, and
 * no later step has anything to do with it.
 */
export async function runSteps(steps: readonly Step[], ctx: UpdateContext): Promise<void> {
  for (const step of steps) {
    ctx.signal?.throwIfAborted();
    if (ctx.updateId) {
      const u = currentUpdate(ctx);
      if (ended(u.state)) return;
      ctx.hooks.onStep?.(step.name, u);
    }
    await step.run(ctx);
  }
}
