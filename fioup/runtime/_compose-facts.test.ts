import { describe, expect, test } from "bun:test";
import { parseDocument } from "yaml";
import { composeDurationSeconds, composeFacts, startWaves } from "./_compose-facts.ts";

describe("compose facts", () => {
  test("composeDurationSeconds reads compose durations and refuses the rest", () => {
    expect(composeDurationSeconds("1s")).toBe(1);
    expect(composeDurationSeconds("1m30s")).toBe(90);
    expect(composeDurationSeconds("500ms")).toBe(0.5);
    expect(composeDurationSeconds("2h")).toBe(7200);
    expect(composeDurationSeconds("soon")).toBeUndefined();
    expect(composeDurationSeconds("1s later")).toBeUndefined();
  });

  test("an app using another app's network starts in a later wave; independent apps start together", () => {
    const facts = (text: string, project: string) => composeFacts(parseDocument(text), project);
    const a = { name: "a", facts: facts("services:\n  s:\n    image: x\n    stop_grace_period: 1s\nnetworks:\n  shared:\n    name: shared-net\n", "a") };
    const b = { name: "b", facts: facts("services:\n  s:\n    image: x\nnetworks:\n  default:\n    external: true\n    name: shared-net\n", "b") };
    const c = { name: "c", facts: facts("services:\n  s:\n    image: x\n", "c") };
    expect(a.facts.stopGrace.get("s")).toBe(1);
    expect(startWaves([b, a, c]).map((w) => w.map((x) => x.name))).toEqual([["a", "c"], ["b"]]);
  });
});
