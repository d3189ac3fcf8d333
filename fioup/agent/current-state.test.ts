import { describe, expect, test } from "bun:test";
import { oldName } from "./activity.ts";
import { LABELS } from "./create-body.ts";
import { currentState, isOldName } from "./current-state.ts";

const mine = (name: string) => ({ id: name, name, running: true, labels: { [LABELS.owner]: "test", [LABELS.version]: "1" }, image: "reg.example/app:1", state: "running" });

describe("currentState", () => {
  test("leaves out the old containers the agent sets aside during an apply", () => {
    expect(isOldName(oldName("web", "a1"))).toBe(true);
    expect(isOldName("web")).toBe(false);
    const s = currentState([mine("web"), mine(oldName("web", "a1"))], { instance: "test", systemContainers: [], version: "0" });
    expect(s.softwareNodes.map((x) => x.id)).toEqual(["containers", "containers:web"]);
  });
});
