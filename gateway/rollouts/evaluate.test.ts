import { describe, expect, test } from "bun:test";
import type { AppState, DeviceEvent } from "../../lib/api/device.ts";
import { evaluateDevice, type DeviceEvidence, type EvaluateContext, type TargetInfo } from "./evaluate.ts";

const T0 = Date.parse("2026-12-01T10:00:00Z");
const iso = (ms: number) => new Date(ms).toISOString();
const min = 60_000;

const targets = new Map<string, TargetInfo>([
  ["hw-41", { version: "41", apps: { web: "reg/web@sha256:41" } }],
  ["hw-42", { version: "42", apps: { web: "reg/web@sha256:42" } }],
]);

const ctx = (now: number, over: Partial<EvaluateContext["rollout"]> = {}): EvaluateContext => ({
  rollout: { targetVersion: "42", healthWindowS: 600, pendingTimeoutS: 3600, maxHoldS: null, waveStartedAt: iso(T0), ...over },
  targets,
  now,
});

let n = 0;
function event(type: string, at: number, extra: { success?: boolean; details?: unknown; version?: string } = {}) {
  const event: DeviceEvent = {
    id: `e${n++}`,
    deviceTime: iso(at),
    eventType: { id: type, version: 2 },
    event: {
      correlationId: "u1",
      targetName: `hw-${extra.version ?? "42"}`,
      version: extra.version ?? "42",
      ...(extra.success !== undefined ? { success: extra.success } : {}),
      ...(extra.details !== undefined ? { details: JSON.stringify(extra.details) } : {}),
    },
  };
  return { receivedAt: iso(at), event };
}

const app = (uri: string, state: AppState["state"], services: AppState["services"] = [{ name: "web", state: "running" }]): AppState => ({ uri, state, services });

function evidence(over: Partial<DeviceEvidence> = {}): DeviceEvidence {
  return { uuid: "d1", wave: 0, healthySince: null, hold: null, currentTarget: "hw-41", events: [], appsStates: null, appsStatesAt: null, ...over };
}

describe("a rollout member's status", () => {
  test("pending with nothing reported, failed with reason timeout once the pending timeout passed", () => {
    expect(evaluateDevice(evidence(), ctx(T0 + 59 * min))).toBeUndefined();
    expect(evaluateDevice(evidence(), ctx(T0 + 60 * min))).toMatchObject({ status: "failed", reason: expect.stringMatching(/^timeout/) });
    expect(evaluateDevice(evidence(), ctx(T0 + 600 * min, { state: "halted" }))).toBeUndefined(); // a halted rollout may be withholding the version
  });

  test("succeeded only after every app of the target stayed healthy for the health window", () => {
    const done = event("EcuInstallationCompleted", T0 + 5 * min, { success: true });
    const healthy = { deviceTime: iso(T0), apps: { web: app("reg/web@sha256:42", "healthy") } };
    const first = evaluateDevice(evidence({ currentTarget: "hw-42", events: [done], appsStates: healthy, appsStatesAt: iso(T0 + 6 * min) }), ctx(T0 + 7 * min));
    expect(first).toEqual({ uuid: "d1", healthySince: iso(T0 + 6 * min) });
    const later = evidence({ currentTarget: "hw-42", events: [done], appsStates: healthy, appsStatesAt: iso(T0 + 6 * min), healthySince: first!.healthySince! });
    expect(evaluateDevice(later, ctx(T0 + 15 * min))).toBeUndefined(); // 9 minutes healthy: not yet
    expect(evaluateDevice(later, ctx(T0 + 16 * min))).toMatchObject({ status: "succeeded" });
  });

  test("a target without apps succeeds once installed and the health window passed", () => {
    const done = event("EcuInstallationCompleted", T0 + 5 * min, { success: true });
    done.event.event.targetName = "hw-42-noapps";
    const c = { ...ctx(T0 + 16 * min), targets: new Map([...targets, ["hw-42-noapps", { version: "42", apps: {} }]]) };
    expect(evaluateDevice(evidence({ events: [done], healthySince: iso(T0 + 5 * min) }), c)).toMatchObject({ status: "succeeded" });
  });

  test("an apps report of the old target does not count as healthy for the new one", () => {
    const done = event("EcuInstallationCompleted", T0 + 5 * min, { success: true });
    const old = { deviceTime: iso(T0), apps: { web: app("reg/web@sha256:41", "healthy") } };
    expect(evaluateDevice(evidence({ currentTarget: "hw-42", events: [done], appsStates: old, appsStatesAt: iso(T0 + 6 * min) }), ctx(T0 + 30 * min))).toBeUndefined();
  });

  test("failed on an install failure or rollback for the version, with its reason; other versions' failures do not count", () => {
    const rb = event("EcuInstallationCompleted", T0 + min, { success: false, details: { phase: "start", error: 'service "web" is unhealthy', rolledBackTo: "hw-41", rollbackOk: true } });
    expect(evaluateDevice(evidence({ events: [rb] }), ctx(T0 + 2 * min))).toMatchObject({ status: "failed", reason: 'rolled back at start: service "web" is unhealthy' });
    const other = event("EcuInstallationCompleted", T0 + min, { success: false, version: "41", details: "boom" });
    expect(evaluateDevice(evidence({ events: [other] }), ctx(T0 + 2 * min))).toBeUndefined();
    const cancelled = event("EcuInstallationCompleted", T0 + min, { success: false, details: { canceled: true } });
    expect(evaluateDevice(evidence({ events: [cancelled] }), ctx(T0 + 2 * min))).toBeUndefined();
  });

  test("failed when an app of the target turns unhealthy or exits within the health window; a starting app only restarts the window", () => {
    const done = event("EcuInstallationCompleted", T0 + 5 * min, { success: true });
    const sick = { deviceTime: iso(T0), apps: { web: app("reg/web@sha256:42", "unhealthy", [{ name: "web", state: "running", health: "unhealthy" }]) } };
    expect(evaluateDevice(evidence({ currentTarget: "hw-42", events: [done], appsStates: sick, appsStatesAt: iso(T0 + 8 * min), healthySince: iso(T0 + 6 * min) }), ctx(T0 + 9 * min))).toMatchObject({
      status: "failed",
      reason: 'app "web" is unhealthy: service "web" is unhealthy',
    });
    const exited = { deviceTime: iso(T0), apps: { web: app("reg/web@sha256:42", "unhealthy", [{ name: "web", state: "exited" }]) } };
    expect(evaluateDevice(evidence({ currentTarget: "hw-42", events: [done], appsStates: exited, appsStatesAt: iso(T0 + 8 * min) }), ctx(T0 + 9 * min))).toMatchObject({ status: "failed" });
    const starting = { deviceTime: iso(T0), apps: { web: app("reg/web@sha256:42", "unhealthy", [{ name: "web", state: "running", health: "starting" }]) } };
    expect(evaluateDevice(evidence({ currentTarget: "hw-42", events: [done], appsStates: starting, appsStatesAt: iso(T0 + 8 * min), healthySince: iso(T0 + 6 * min) }), ctx(T0 + 9 * min))).toEqual({ uuid: "d1", healthySince: null });
  });

  test("a deferral is recorded as the device's hold and keeps it from timing out until the hold ends", () => {
    const deferred = event("UpdateDeferred", T0 + min, { details: { reason: "window", until: iso(T0 + 120 * min), heldSince: iso(T0 + min) } });
    const first = evaluateDevice(evidence({ events: [deferred] }), ctx(T0 + 2 * min));
    expect(first).toEqual({ uuid: "d1", hold: { kind: "window", until: iso(T0 + 120 * min), at: iso(T0 + min) } });
    const held = evidence({ events: [deferred], hold: first!.hold! });
    expect(evaluateDevice(held, ctx(T0 + 170 * min))).toBeUndefined(); // window opens at 120 min, timeout 60 min after
    expect(evaluateDevice(held, ctx(T0 + 180 * min))).toMatchObject({ status: "failed", reason: expect.stringMatching(/^timeout/) });
    const released = event("UpdateHoldReleased", T0 + 121 * min, { details: { releasedBy: "window" } });
    expect(evaluateDevice(evidence({ events: [deferred, released], hold: first!.hold! }), ctx(T0 + 122 * min))).toEqual({ uuid: "d1", hold: null });
  });

  test("a hold's end sent by a device whose clock is off is read on the gateway's clock", () => {
    // The device's clock reads 1970: its window opens 119 minutes after its event, in its own time.
    const skewed = event("UpdateDeferred", T0 + min, { details: { reason: "window", until: "1970-01-01T02:00:00.000Z" } });
    skewed.event.deviceTime = "1970-01-01T00:01:00.000Z";
    const first = evaluateDevice(evidence({ events: [skewed] }), ctx(T0 + 2 * min));
    expect(first).toEqual({ uuid: "d1", hold: { kind: "window", until: iso(T0 + 120 * min), at: iso(T0 + min) } });
    // Held, not timed out, until 60 minutes after the window opens, as with a right clock.
    expect(evaluateDevice(evidence({ events: [skewed], hold: first!.hold! }), ctx(T0 + 170 * min))).toBeUndefined();
  });

  test("a device waiting for its clock to be set is recorded as such, and not timed out by the max hold meant for locks", () => {
    const deferred = event("UpdateDeferred", T0, { details: { reason: "clock", until: null, window: "Mon-Fri 02:00-04:00" } });
    const c = ctx(T0 + 121 * min, { maxHoldS: 3600 });
    expect(evaluateDevice(evidence({ events: [deferred] }), c)).toEqual({ uuid: "d1", hold: { kind: "clock", until: null, at: iso(T0) } });
    expect(evaluateDevice(evidence({ events: [deferred], hold: { kind: "clock", until: null, at: iso(T0) } }), c)).toBeUndefined();
  });

  test("a lock hold is bounded by the rollout's max hold even when the device says it ends later", () => {
    const deferred = event("UpdateDeferred", T0, { details: { reason: "lock", until: "9999-01-01T00:00:00Z" } });
    const c = ctx(T0 + 119 * min, { maxHoldS: 3600 });
    const first = evaluateDevice(evidence({ events: [deferred] }), c)!;
    expect(evaluateDevice(evidence({ events: [deferred], hold: first.hold! }), c)).toBeUndefined();
    expect(evaluateDevice(evidence({ events: [deferred], hold: first.hold! }), { ...c, now: T0 + 121 * min })).toMatchObject({ status: "failed", reason: expect.stringMatching(/^timeout/) });
  });

  test("no hold keeps a device pending past a week from its first deferral, though it defers again every day with a far end", () => {
    const day = 24 * 60 * min;
    const events = Array.from({ length: 9 }, (_, i) => event("UpdateDeferred", T0 + i * day, { details: { reason: i % 2 ? "window" : "clock", until: i % 2 ? "9999-01-01T00:00:00Z" : null } }));
    let hold = evaluateDevice(evidence({ events }), ctx(T0 + 8 * day))!.hold!;
    expect(hold.since).toBe(iso(T0));
    const held = evidence({ events, hold });
    expect(evaluateDevice(held, ctx(T0 + 7 * day + 59 * min))).toBeUndefined();
    expect(evaluateDevice(held, ctx(T0 + 7 * day + 61 * min))).toMatchObject({ status: "failed", reason: expect.stringMatching(/^timeout/) });
    // Released, the next hold starts afresh.
    const released = event("UpdateHoldReleased", T0 + 8 * day + min, { details: { releasedBy: "window" } });
    const again = event("UpdateDeferred", T0 + 8 * day + 2 * min, { details: { reason: "clock", until: null } });
    hold = evaluateDevice(evidence({ events: [...events, released, again] }), ctx(T0 + 8 * day + 3 * min))!.hold!;
    expect(hold).toEqual({ kind: "clock", until: null, at: iso(T0 + 8 * day + 2 * min) });
  });

  test("a lock hold without an end is bounded by the rollout's max hold", () => {
    const deferred = event("UpdateDeferred", T0, { details: { reason: "lock", until: null } });
    const c = ctx(T0 + 119 * min, { maxHoldS: 3600 });
    expect(evaluateDevice(evidence({ events: [deferred], hold: { kind: "lock", until: null, at: iso(T0) } }), c)).toBeUndefined();
    expect(evaluateDevice(evidence({ events: [deferred], hold: { kind: "lock", until: null, at: iso(T0) } }), { ...c, now: T0 + 121 * min })).toMatchObject({ status: "failed" });
  });
});
