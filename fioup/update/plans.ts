/**
 * Which steps each command runs. Every list can resume a saved
 * update: steps whose work is done return at once.
 *
 * @module
 */
import { checkStep, pendingStep, type CheckStepOptions } from "./check-step.ts";
import { completeStep } from "./complete-step.ts";
import { fetchStep } from "./fetch-step.ts";
import { initStep } from "./init-step.ts";
import { installStep } from "./install-step.ts";
import { startStep } from "./start-step.ts";
import type { Step } from "./step.ts";

export const plans = {
  update: (o: CheckStepOptions = {}): Step[] => [checkStep(o), initStep, fetchStep, installStep, startStep, completeStep],
  fetch: (o: CheckStepOptions = {}): Step[] => [checkStep(o), initStep, fetchStep],
  install: (): Step[] => [pendingStep("install"), installStep],
  start: (): Step[] => [pendingStep("start"), startStep, completeStep],
  resume: (): Step[] => [pendingStep("resume"), initStep, fetchStep, installStep, startStep, completeStep],
};
