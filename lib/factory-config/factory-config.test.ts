import { describe, expect, test } from "bun:test";
import { decidePreload, FactoryConfigError, parseFactoryConfig, readFactoryConfig, tagsForRef } from "./index.ts";

// A factory's usual advanced setup: master publishes two tags, devel preloads a debug app, experimental builds no image.
const SEED_EXAMPLE = `
lmp:
  tagging:
    refs/heads/production:
      - tag: production
        inherit: master
containers:
  preloaded_images:
    enabled: true
    shortlist: "money-making-app"
  tagging:
    refs/heads/master:
      - tag: master
      - tag: production
    refs/heads/devel:
      - tag: devel
  ref_options:
    refs/heads/devel:
      params:
        APP_SHORTLIST: "money-making-app,debug-tools"
    refs/heads/experimental:
      params:
        ASSEMBLE_SYSTEM_IMAGE: "0"
`;

describe("decidePreload on the usual advanced setup", () => {
  const config = parseFactoryConfig(SEED_EXAMPLE);

  test("devel preloads money-making-app and debug-tools", () => {
    const d = decidePreload(config, "refs/heads/devel");
    expect(d.assemble).toBe(true);
    expect(d.apps).toEqual(["money-making-app", "debug-tools"]);
    expect(d.tags).toEqual(["devel"]);
  });

  test("master preloads money-making-app and publishes master and production tags", () => {
    const d = decidePreload(config, "refs/heads/master");
    expect(d.assemble).toBe(true);
    expect(d.apps).toEqual(["money-making-app"]);
    expect(d.tags).toEqual(["master", "production"]);
  });

  test("production (lmp branch inheriting master's containers) preloads money-making-app", () => {
    const d = decidePreload(config, "refs/heads/production", "lmp");
    expect(d.assemble).toBe(true);
    expect(d.apps).toEqual(["money-making-app"]);
    expect(d.tags).toEqual(["production"]);
  });

  test("experimental produces no image and says why", () => {
    const d = decidePreload(config, "experimental");
    expect(d.assemble).toBe(false);
    expect(d.reasons.join("\n")).toContain("ASSEMBLE_SYSTEM_IMAGE");
  });
});

describe("decidePreload inheritance", () => {
  test("lmp inherits containers' preloaded_images when it sets none", () => {
    const c = parseFactoryConfig(`containers:\n  preloaded_images:\n    enabled: true\n`);
    expect(decidePreload(c, "main", "lmp")).toMatchObject({ assemble: true, apps: undefined });
  });

  test("lmp's own setting overrides containers'", () => {
    const c = parseFactoryConfig(
      `lmp:\n  preloaded_images:\n    enabled: false\ncontainers:\n  preloaded_images:\n    enabled: true\n`,
    );
    expect(decidePreload(c, "main", "lmp").assemble).toBe(false);
    expect(decidePreload(c, "main", "containers").assemble).toBe(true);
  });

  test("containers never inherits from lmp", () => {
    const c = parseFactoryConfig(`lmp:\n  preloaded_images:\n    enabled: true\n    shortlist: "a"\n`);
    expect(decidePreload(c, "main", "lmp")).toMatchObject({ assemble: true, apps: ["a"] });
    expect(decidePreload(c, "main", "containers").assemble).toBe(false);
  });

  test("an empty config preloads nothing", () => {
    expect(decidePreload(parseFactoryConfig(""), "main").assemble).toBe(false);
  });
});

describe("parseFactoryConfig", () => {
  test("rejects malformed YAML with the file name", () => {
    expect(() => parseFactoryConfig("containers: [", "f.yml")).toThrow(/Cannot parse f.yml/);
  });
  test("rejects a non-boolean enabled with the path", () => {
    expect(() => parseFactoryConfig(`containers:\n  preloaded_images:\n    enabled: "yes"\n`)).toThrow(FactoryConfigError);
  });
});

describe("tagsForRef", () => {
  const config = parseFactoryConfig(SEED_EXAMPLE);
  test("maps master to master and production; a bare branch name is refs/heads/<name>", () => {
    expect(tagsForRef(config, "refs/heads/master").tags).toEqual(["master", "production"]);
    expect(tagsForRef(config, "devel").tags).toEqual(["devel"]);
  });
  test("defaults to the branch name", () => {
    expect(tagsForRef(config, "refs/heads/feature-x").tags).toEqual(["feature-x"]);
    expect(tagsForRef(parseFactoryConfig(""), "refs/heads/main")).toEqual({ tags: ["main"], reason: 'no containers.tagging rule for refs/heads/main: the tag is the branch name "main"' });
  });
  test("refuses a ref that is not a branch and has no entry", () => {
    expect(() => tagsForRef(parseFactoryConfig(""), "refs/tags/v1")).toThrow(FactoryConfigError);
    expect(() => tagsForRef(parseFactoryConfig(""), "refs/tags/v1")).toThrow("not a branch usable as a tag");
  });
});

describe("parseFactoryConfig shape checks", () => {
  test("an invalid tag names the key and the value", () => {
    expect(() => parseFactoryConfig("containers:\n  tagging:\n    refs/heads/x: [{tag: 'a b'}]\n", "f.yml")).toThrow(
      'Invalid f.yml: containers.tagging["refs/heads/x"][0].tag: expected a tag (letters, digits, . _ -; at most 128, starting with a letter or digit), got "a b"',
    );
  });
  test("platforms map hardware ids to os/arch", () => {
    expect(parseFactoryConfig("containers:\n  platforms:\n    rpi4: linux/arm64\n").containers?.platforms).toEqual({ rpi4: "linux/arm64" });
    expect(() => parseFactoryConfig("containers:\n  platforms:\n    rpi4: arm64\n", "f.yml")).toThrow(
      'Invalid f.yml: containers.platforms.rpi4: expected a platform: os/arch or os/arch/variant (linux/arm64, linux/arm/v7), got "arm64"',
    );
    expect(parseFactoryConfig("containers:\nlmp:\n  tagging:\n")).toEqual({ lmp: {} });
  });
});

test("a factory config that cannot be read names the file and why, as a FactoryConfigError", async () => {
  const err = await readFactoryConfig("/nonexistent/factory-config.yml").catch((e) => e);
  expect(err).toBeInstanceOf(FactoryConfigError);
  expect(err.message).toBe("Cannot read the factory config /nonexistent/factory-config.yml: no such file");
});
