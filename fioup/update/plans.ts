/**
 * Which steps each command runs. Every list can resume a saved
 * update: steps whose work is done return at once. The hold step sits between
 * fetch and install: bytes are fetched at once, installing waits for the
 * maintenance window and the update locks (./hold.ts).
 *
 * @module
 */
import { checkStep, pendingStep, type CheckStepOptions } from "./check-step.ts";
import { completeStep } from "./complete-step.ts";
import { fetchStep } from "./fetch-step.ts";
import { holdStep, type HoldOptions } from "./hold.ts";
import { initStep } from "./init-step.ts";
import { installStep } from "./install-step.ts";
import { startStep } from "./start-step.ts";
import type { Step } from "./step.ts";

export const plans = {
  update: (o: CheckStepOptions = {}, h: HoldOptions = {}): Step[] => [checkStep(o), initStep, fetchStep, holdStep(h), installStep, startStep, completeStep],
  fetch: (o: CheckStepOptions = {}): Step[] => [checkStep(o), initStep, fetchStep],
  install: (h: HoldOptions = {}): Step[] => [pendingStep("install"), holdStep(h), installStep],
  start: (): Step[] => [pendingStep("start"), startStep, completeStep],
  resume: (h: HoldOptions = {}): Step[] => [pendingStep("resume"), initStep, fetchStep, holdStep(h), installStep, startStep, completeStep],
};
