import { expect, test } from "bun:test";
import { InvalidStateError, interruptedMessage, type UpdateState } from "./states.ts";

const at = (state: UpdateState) => ({ toTarget: "amd64-linux-2", version: "2", state });

test("after Ctrl-C, 'fioup cancel' is offered only while the update's apps have not started (cancel refuses from starting on)", () => {
  expect(interruptedMessage(at("installing"), "install")).toBe(
    "Interrupted: the update to amd64-linux-2 (version 2) is saved (installing); 'fioup install' resumes it, 'fioup cancel' drops it",
  );
  for (const state of ["starting", "started", "completing"] as const)
    expect(interruptedMessage(at(state), "update")).toBe(`Interrupted: the update to amd64-linux-2 (version 2) is saved (${state}); 'fioup update' resumes it`);
  expect(interruptedMessage(at("completed"), "update")).toBe("Interrupted: the update to amd64-linux-2 (version 2) ended completed");
});

test("a refusal offers 'fioup cancel' for an installed update, which cancel still drops, not for a started one", () => {
  expect(new InvalidStateError("fetch", "installed").message).toContain("run 'fioup start' next or 'fioup cancel' to drop it");
  expect(new InvalidStateError("fetch", "started").message).not.toContain("fioup cancel");
});

test("after Ctrl-C with apps the update stopped, the line says they stay stopped until the update is resumed or dropped", () => {
  expect(interruptedMessage(at("installed"), "update", ["web"])).toBe(
    "Interrupted: the update to amd64-linux-2 (version 2) is saved (installed); 'fioup update' resumes it, 'fioup cancel' drops it; web is stopped until one of them runs",
  );
  expect(interruptedMessage(at("installing"), "install", ["api", "web"])).toContain("; api, web are stopped until one of them runs");
});
