import { describe, expect, test } from "bun:test";
import { parseDocument } from "yaml";
import { composeDurationSeconds, composeFacts, enabledProfiles, startWaves } from "./_compose-facts.ts";

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

  const PROFILED = "services:\n  main:\n    image: x\n  debug:\n    image: x\n    profiles: [debug]\n  metrics:\n    image: x\n    profiles: [metrics, ops]\n  none:\n    image: x\n    profiles: []\n";
  const notStarted = (dotEnv: string | undefined, env: Record<string, string> = {}) =>
    [...composeFacts(parseDocument(PROFILED), "p", enabledProfiles(dotEnv, "p/.env", env)).notStarted].sort();

  test("a profiled service is started when the app's .env enables one of its profiles, and left out otherwise", () => {
    expect(notStarted(undefined)).toEqual(["debug", "metrics"]);
    expect(notStarted("# debug tools on every device\nCOMPOSE_PROFILES=debug\n")).toEqual(["metrics"]);
    expect(notStarted("COMPOSE_PROFILES='ops, debug'\n")).toEqual([]);
    expect(notStarted("COMPOSE_PROFILES=*\n")).toEqual([]);
    expect(notStarted("COMPOSE_PROFILES=\nOTHER=debug\n")).toEqual(["debug", "metrics"]);
  });

  test("enabledProfiles reads COMPOSE_PROFILES as compose does: the environment first, then .env, a variable the device lacks as empty", () => {
    expect(enabledProfiles("COMPOSE_PROFILES=debug\n", "p/.env", { COMPOSE_PROFILES: "ops" })).toEqual(["ops"]);
    expect(enabledProfiles("COMPOSE_PROFILES=${EXTRA:-debug},${MORE}\n", "p/.env", {})).toEqual(["debug"]);
    expect(enabledProfiles("COMPOSE_PROFILES=${EXTRA:-debug},${MORE}\n", "p/.env", { EXTRA: "ops", MORE: "metrics" })).toEqual(["ops", "metrics"]);
    // Publish resolved TAG from the CI environment; on the device compose reads it as empty and still enables debug.
    expect(enabledProfiles("TAG=${CI_TAG}\nCOMPOSE_PROFILES=debug\n", "p/.env", {})).toEqual(["debug"]);
    // A line compose cannot read either: compose up fails, and no profile counts as enabled.
    expect(enabledProfiles("COMPOSE_PROFILES=debug\nnot a pair\n", "p/.env", {})).toEqual([]);
    expect(enabledProfiles("COMPOSE_PROFILES=${NEED:?set NEED}\n", "p/.env", {})).toEqual([]);
  });

  test("compose v1 reads the list literally: no trimming, and * is no profile", () => {
    expect(enabledProfiles("COMPOSE_PROFILES=debug, ops\n", "p/.env", {})).toEqual(["debug", "ops"]);
    expect(enabledProfiles("COMPOSE_PROFILES=debug, ops\n", "p/.env", {}, true)).toEqual(["debug", " ops"]);
    expect(enabledProfiles("COMPOSE_PROFILES=*\n", "p/.env", {})).toEqual(["*"]);
    expect(enabledProfiles("COMPOSE_PROFILES=*\n", "p/.env", {}, true)).toEqual([]);
  });
});
