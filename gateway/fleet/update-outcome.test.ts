import { expect, test } from "bun:test";
import type { DeviceEvent } from "../../lib/api/index.ts";
import { isCancelEvent } from "./update-outcome.ts";

const completed = (success: boolean, details?: unknown): DeviceEvent => ({
  id: "e",
  deviceTime: "2026-12-06T00:00:00Z",
  eventType: { id: "EcuInstallationCompleted", version: 2 },
  event: { correlationId: "c", targetName: "x-2", version: "2", success, ...(details === undefined ? {} : { details: JSON.stringify(details) }) },
});

test("a cancel is one whose previous apps were put back; one whose restore failed is the failure it is", () => {
  expect(isCancelEvent(completed(false, { canceled: true, restoredTo: "x-1", restoreOk: true }))).toBe(true);
  expect(isCancelEvent(completed(false, { canceled: true }))).toBe(true);
  expect(isCancelEvent(completed(false, { canceled: true, restoredTo: null, restoreOk: false, restoreError: "no such image" }))).toBe(false);
  expect(isCancelEvent(completed(false, { phase: "fetch", error: "404" }))).toBe(false);
  expect(isCancelEvent(completed(true, { canceled: true }))).toBe(false);
});
