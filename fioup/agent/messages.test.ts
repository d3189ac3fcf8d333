import { describe, expect, test } from "bun:test";
import { DesiredStateMessage, InvalidMessageError, parseMessage } from "./messages.ts";

describe("parseMessage", () => {
  test("names the wrong field", () => {
    const bad = JSON.stringify({ activityId: "a1", payload: { domains: [{ id: "containers", components: [{ id: "x", config: [{ key: "image", value: 5 }] }] }] } });
    expect(() => parseMessage(DesiredStateMessage, bad)).toThrow("payload.domains[0].components[0].config[0].value: expected string");
    try {
      parseMessage(DesiredStateMessage, bad);
    } catch (err) {
      expect((err as InvalidMessageError).activityId).toBe("a1");
    }
  });

  test("refuses oversized and non-JSON messages before parsing them", () => {
    expect(() => parseMessage(DesiredStateMessage, "x".repeat(2 << 20))).toThrow(/more than/);
    expect(() => parseMessage(DesiredStateMessage, "{")).toThrow(/not JSON/);
  });

  test("refuses a component id of one character: the engine needs two for a container name", () => {
    const msg = (id: string) => JSON.stringify({ activityId: "a1", payload: { domains: [{ id: "containers", components: [{ id, config: [] }] }] } });
    expect(() => parseMessage(DesiredStateMessage, msg("a"))).toThrow("payload.domains[0].components[0].id");
    expect(parseMessage(DesiredStateMessage, msg("ab")).payload.domains[0]!.components![0]!.id).toBe("ab");
  });
});
