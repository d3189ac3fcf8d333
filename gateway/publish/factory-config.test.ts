import { describe, expect, test } from "bun:test";
import { FactoryConfigError, tagsForRef } from "./factory-config.ts";

const SEED = `
containers:
  preloaded_images:
    enabled: true
    shortlist: "money-making-app"
  tagging:
    # Changes to containers master create both "master" and "production" tagged targets
    refs/heads/master:
      - tag: master
      - tag: production
    refs/heads/devel:
      - tag: devel
`;

describe("tagsForRef", () => {
  test("maps master to master and production, as in the seed", () => {
    expect(tagsForRef(SEED, "refs/heads/master")).toEqual(["master", "production"]);
    expect(tagsForRef(SEED, "devel")).toEqual(["devel"]);
  });
  test("defaults to the branch name", () => {
    expect(tagsForRef(SEED, "refs/heads/feature-x")).toEqual(["feature-x"]);
    expect(tagsForRef(undefined, "refs/heads/main")).toEqual(["main"]);
  });
  test("rejects refs that are not branches and malformed entries", () => {
    expect(() => tagsForRef(undefined, "refs/tags/v1")).toThrow(FactoryConfigError);
    expect(() => tagsForRef("containers:\n  tagging:\n    refs/heads/x: [{tag: 'a b'}]\n", "refs/heads/x")).toThrow("invalid tag");
    expect(() => tagsForRef("containers: [\n", "refs/heads/x")).toThrow("Invalid factory config");
  });
});
