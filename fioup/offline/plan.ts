/**
 * The steps of an offline update: the online update's steps with the check replaced by the
 * bundle's (so a step added to online updates runs offline too).
 *
 * @module
 */
import type { Bundle } from "../../lib/bundle/index.ts";
import type { HoldOptions } from "../update/hold.ts";
import { plans } from "../update/plans.ts";
import type { Step } from "../update/step.ts";
import { offlineCheckStep } from "./check-step.ts";

export function offlinePlan(bundle: Bundle, hold: HoldOptions = {}): Step[] {
  const online = plans.update({}, hold);
  if (online[0]?.name !== "check") throw new Error(`The update plan no longer starts with the check step (${online[0]?.name}): fioup/offline/plan.ts needs a look`);
  return [offlineCheckStep(bundle), ...online.slice(1)];
}
