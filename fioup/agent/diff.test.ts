import { describe, expect, test } from "bun:test";
import { componentSpec } from "./component-config.ts";
import { COMPOSE_PROJECT_LABEL, LABELS, updateBody } from "./create-body.ts";
import { diffContainers, type CurrentContainer } from "./diff.ts";

const comp = (config: { key: string; value: string }[], id = "app") => ({ id, version: "1", config: [{ key: "image", value: "reg.example/app:1" }, ...config] });

describe("diffContainers", () => {
  const spec = componentSpec(comp([]));
  const running = (name: string, labels: Record<string, string>, s = spec): CurrentContainer => {
    const u = updateBody(s) as any;
    return { id: `id-${name}`, name, running: true, labels, update: { policy: u.RestartPolicy.Name, maxRetries: u.RestartPolicy.MaximumRetryCount, memory: u.Memory, swap: u.MemorySwap, reservation: u.MemoryReservation } };
  };
  const ours = (s = spec) => ({ [LABELS.owner]: "dev", [LABELS.spec]: JSON.stringify(s), [LABELS.version]: s.version });

  test("keeps, updates, recreates, creates and destroys by the rules", () => {
    const current = [running("app", ours()), running("gone", ours()), running("sys", ours()), running("web-1", { [COMPOSE_PROJECT_LABEL]: "web" }), running("other", {})];
    const want = [componentSpec(comp([{ key: "restartPolicy", value: "always" }])), componentSpec(comp([], "new"))];
    const kinds = diffContainers(want, current, { instance: "dev", systemContainers: ["sys"] }).map((a) => `${a.kind}:${a.name}`);
    expect(kinds).toEqual(["destroy:gone", "update:app", "create:new"]);
    expect(diffContainers([spec], [running("app", ours())], { instance: "dev", systemContainers: [] })[0]!.kind).toBe("keep");
    expect(diffContainers([componentSpec(comp([{ key: "env", value: "A=1" }]))], [running("app", ours())], { instance: "dev", systemContainers: [] })[0]!.kind).toBe("recreate");
  });

  test("a stopped container is recreated though its config matches (a desired state means running), unless its restart policy lets it stay stopped (a one-shot)", () => {
    expect(diffContainers([spec], [{ ...running("app", ours()), running: false }], { instance: "dev", systemContainers: [] })[0]!.kind).toBe("recreate");
    for (const policy of ["no", "on-failure"]) {
      const oneShot = componentSpec(comp([{ key: "restartPolicy", value: policy }]));
      expect({ policy, kind: diffContainers([oneShot], [{ ...running("app", ours(oneShot), oneShot), running: false }], { instance: "dev", systemContainers: [] })[0]!.kind }).toEqual({ policy, kind: "keep" });
    }
  });

  test("removing a memory limit recreates (the engine cannot unset it in place)", () => {
    const limited = componentSpec(comp([{ key: "memory", value: "64M" }]));
    expect(diffContainers([spec], [running("app", ours(limited), limited)], { instance: "dev", systemContainers: [] })[0]!.kind).toBe("recreate");
  });

  test("refuses a component that names a system, compose or foreign container", () => {
    const o = { instance: "dev", systemContainers: ["app"] };
    expect(() => diffContainers([spec], [], o)).toThrow(/system container/);
    expect(() => diffContainers([spec], [running("app", { [COMPOSE_PROJECT_LABEL]: "web" })], { ...o, systemContainers: [] })).toThrow(/compose app "web"/);
    expect(() => diffContainers([spec], [running("app", {})], { ...o, systemContainers: [] })).toThrow(/another owner/);
  });
});

