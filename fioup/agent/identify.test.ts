import { describe, expect, test } from "bun:test";
import type { ApplyDeps } from "./_phase.ts";
import type { Activity } from "./activity.ts";
import { identify, IdentificationError } from "./identify.ts";
import type { DesiredStateMessage, Domain } from "./messages.ts";

// An engine with no containers; identify only lists them. The store keeps what was saved.
const saved: Activity[] = [];
const deps = {
  engine: { listContainers: async () => [] },
  store: { save: (a: Activity) => saved.push(a) },
  instance: "test",
} as unknown as ApplyDeps;
const defaults = { systemContainers: [], commandFlow: false };
const app = (id: string) => ({ id, version: "1", config: [{ key: "image", value: "reg.example/app:1" }] });
const msg = (...domains: Domain[]): DesiredStateMessage => ({ activityId: "a1", payload: { domains } });

describe("identify", () => {
  test("plans the components of the containers domain", async () => {
    const a = await identify(deps, msg({ id: "containers", components: [app("aa"), app("bb")] }), defaults);
    expect(a.actions.map((x) => [x.kind, x.name])).toEqual([["create", "aa"], ["create", "bb"]]);
  });

  test("refuses a second containers domain instead of applying the first alone", async () => {
    const p = identify(deps, msg({ id: "containers", components: [app("aa")] }, { id: "containers", components: [app("cc")] }), defaults);
    await expect(p).rejects.toThrow(IdentificationError);
    await expect(p).rejects.toThrow(`payload.domains[1]: a second "containers" domain`);
  });

  test("refuses a domain other than containers, as Kanto's container update agent does", async () => {
    const p = identify(deps, msg({ id: "containers", components: [app("aa")] }, { id: "apps", components: [app("cc")] }), defaults);
    await expect(p).rejects.toThrow(`payload.domains[1]: domain "apps" is not one this agent applies`);
    await expect(identify(deps, msg(), defaults)).rejects.toThrow(`it has no "containers" domain`);
  });

  test("refuses an id carrying the suffix the agent gives the old containers it sets aside", async () => {
    // The inventory hides such a container, and the agent's own rename during an apply could clash with it.
    for (const id of ["web.fioup-old-abcdefgh", "web.fioup-old-x.y"]) {
      await expect(identify(deps, msg({ id: "containers", components: [app(id)] }), defaults), id).rejects.toThrow(`("${id}"): ".fioup-old-" is reserved`);
    }
  });
});
