import { describe, expect, test } from "bun:test";
import { decidePreload, FactoryConfigError, parseFactoryConfig, platformsOf, readFactoryConfig, tagsForRef } from "./index.ts";

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
      'Invalid f.yml: line 3: containers.tagging["refs/heads/x"][0].tag: expected a tag (letters, digits, . _ -; at most 128, starting with a letter or digit), got "a b"',
    );
  });
  test("platforms map hardware ids to os/arch", () => {
    expect(parseFactoryConfig("containers:\n  platforms:\n    rpi4: linux/arm64\n").containers?.platforms).toEqual({ rpi4: "linux/arm64" });
    expect(() => parseFactoryConfig("containers:\n  platforms:\n    rpi4: arm64\n", "f.yml")).toThrow(
      'Invalid f.yml: line 3: containers.platforms.rpi4: expected a platform: os/arch or os/arch/variant (linux/arm64, linux/arm/v7), got "arm64"',
    );
    expect(parseFactoryConfig("containers:\nlmp:\n  tagging:\n")).toEqual({ lmp: {} });
  });
  test("platforms as Foundries writes them, the architectures the factory builds for, are read too", () => {
    const c = parseFactoryConfig("containers:\n  platforms:\n    - arm\n    - arm64\n    - amd64\n");
    expect(platformsOf(c.containers)).toEqual({
      byHwid: {},
      built: [
        { os: "linux", architecture: "arm", variant: "v7" },
        { os: "linux", architecture: "arm64", variant: "v8" },
        { os: "linux", architecture: "amd64" },
      ],
    });
    expect(platformsOf(parseFactoryConfig("containers:\n  platforms:\n    rpi4: linux/arm64\n").containers)).toEqual({ byHwid: { rpi4: "linux/arm64" }, built: [] });
    expect(() => parseFactoryConfig("containers:\n  platforms:\n    - arm64\n    - banana\n", "f.yml")).toThrow(
      'Invalid f.yml: line 4: containers.platforms[1]: expected an architecture the factory builds for: arm, arm64, amd64 or os/arch, got "banana"',
    );
    expect(() => parseFactoryConfig("containers:\n  platforms: 3\n", "f.yml")).toThrow(
      "Invalid f.yml: line 2: containers.platforms: expected a map of hardware id to os/arch, or a list of architectures (arm, arm64, amd64), got 3",
    );
  });
});

test("a factory config that cannot be read names the file and why, as a FactoryConfigError", async () => {
  const err = await readFactoryConfig("/nonexistent/factory-config.yml").catch((e) => e);
  expect(err).toBeInstanceOf(FactoryConfigError);
  expect(err.message).toBe("Cannot read the factory config /nonexistent/factory-config.yml: no such file");
});

describe("shortlists", () => {
  const at = (shortlist: string) => `containers:\n  preloaded_images:\n    enabled: true\n    shortlist: ${JSON.stringify(shortlist)}\n`;
  test("an empty shortlist is refused, naming the key and its line, rather than preloading no app", () => {
    for (const empty of ["", " , "]) {
      expect(() => parseFactoryConfig(at(empty), "f.yml")).toThrow(
        "Invalid f.yml: line 4: containers.preloaded_images.shortlist: empty: it would preload no app (remove it to preload all of the target's apps)",
      );
    }
    expect(() => parseFactoryConfig(`ref_options:\n  refs/heads/x:\n    params:\n      APP_SHORTLIST: ""\n`, "f.yml")).toThrow(
      'Invalid f.yml: line 4: ref_options["refs/heads/x"].params.APP_SHORTLIST: empty',
    );
  });
  test("a shortlist name that is no app name is refused by the rule targets follow", () => {
    expect(() => parseFactoryConfig(at("a b, c/d"), "f.yml")).toThrow(
      'Invalid f.yml: line 4: containers.preloaded_images.shortlist: expected an app name (letters, digits, . _ -; at most 128), got "a b"',
    );
    expect(() => parseFactoryConfig(`containers:\n  ref_options:\n    refs/heads/x:\n      params:\n        APP_SHORTLIST: "ok,c/d"\n`, "f.yml")).toThrow(
      'Invalid f.yml: line 5: containers.ref_options["refs/heads/x"].params.APP_SHORTLIST: expected an app name (letters, digits, . _ -; at most 128), got "c/d"',
    );
  });
  test("spaces and a trailing comma around good names are fine", () => {
    expect(decidePreload(parseFactoryConfig(at(" web, db.1 ,")), "main").apps).toEqual(["web", "db.1"]);
  });
});

describe("ASSEMBLE_SYSTEM_IMAGE", () => {
  const with_ = (value: string) => parseFactoryConfig(`containers:\n  ref_options:\n    refs/heads/main:\n      params:\n        ASSEMBLE_SYSTEM_IMAGE: ${value}\n`, "f.yml");
  test("0, \"0\" and false mean no image; 1, \"1\" and true mean one", () => {
    for (const off of ["0", '"0"', "false", '" 0 "']) expect({ off, assemble: decidePreload(with_(off), "main").assemble }).toEqual({ off, assemble: false });
    for (const on of ["1", '"1"', "true", '"1 "']) expect({ on, assemble: decidePreload(with_(on), "main").assemble }).toEqual({ on, assemble: true });
  });
  test("anything else is refused, naming the key and the values it takes", () => {
    for (const bad of ['"false"', '"no"', "2", '"2"', '""', "yes"]) {
      expect(() => with_(bad)).toThrow(
        `Invalid f.yml: line 5: containers.ref_options["refs/heads/main"].params.ASSEMBLE_SYSTEM_IMAGE: expected 0 or 1 ("0", "1", or false, true), got `,
      );
    }
  });
});

describe("misspelt keys", () => {
  test("an unknown key in preloaded_images is refused with the one meant, and its line", () => {
    expect(() => parseFactoryConfig("containers:\n  preloaded_images:\n    enable: true\n", "f.yml")).toThrow(
      "Invalid f.yml: line 3: containers.preloaded_images.enable: unknown key: did you mean enabled?",
    );
    expect(() => parseFactoryConfig("lmp:\n  preloaded_images:\n    enabled: true\n    apps: x\n", "f.yml")).toThrow(
      "Invalid f.yml: line 4: lmp.preloaded_images.apps: unknown key (known: enabled, shortlist)",
    );
  });
  test("a near miss in a section, a ref_options entry or its params is refused; other CI keys there are not", () => {
    expect(() => parseFactoryConfig("containers:\n  preload_images:\n    enabled: true\n", "f.yml")).toThrow(
      "Invalid f.yml: line 2: containers.preload_images: unknown key: did you mean preloaded_images?",
    );
    expect(() => parseFactoryConfig("ref_options:\n  refs/heads/x:\n    param:\n      A: 1\n", "f.yml")).toThrow(
      'Invalid f.yml: line 3: ref_options["refs/heads/x"].param: unknown key: did you mean params?',
    );
    expect(() => parseFactoryConfig("lmp:\n  ref_options:\n    refs/heads/x:\n      params:\n        APP_SHORTLST: a\n", "f.yml")).toThrow(
      'Invalid f.yml: line 5: lmp.ref_options["refs/heads/x"].params.APP_SHORTLST: unknown key: did you mean APP_SHORTLIST?',
    );
    const ci = parseFactoryConfig(
      "containers:\n  docker_build_args:\n    A: b\n  notify:\n    email: x\n  ref_options:\n    refs/heads/x:\n      machines: [a]\n      params:\n        EXTRA_ARTIFACTS: x\n",
    );
    expect(ci.containers?.ref_options?.["refs/heads/x"]?.params as object).toEqual({ EXTRA_ARTIFACTS: "x" });
  });
  test("a near miss of a top-level section is warned about, once, with its line; other sections are not", () => {
    const warnings: string[] = [];
    const c = parseFactoryConfig("lmp:\n  tagging: {}\nnotify:\n  email: x\ntuf:\n  x: 1\nmfg_tools: []\nci_scripts: {}\ncontainerz:\n  preloaded_images:\n    enabled: true\n", "f.yml", { warn: (l) => warnings.push(l) });
    expect(warnings).toEqual(["f.yml: line 9: containerz: unknown key, ignored: did you mean containers?"]);
    expect(decidePreload(c, "main").assemble).toBe(false);
  });
  test("the usual advanced setup and the publish fixture read without a warning", async () => {
    const warnings: string[] = [];
    parseFactoryConfig(SEED_EXAMPLE, "f.yml", { warn: (l) => warnings.push(l) });
    await readFactoryConfig(`${import.meta.dir}/../../test/publish/factory-config.yml`, { warn: (l) => warnings.push(l) });
    expect(warnings).toEqual([]);
  });
});

test("a type error names the line of the key", () => {
  expect(() => parseFactoryConfig(`containers:\n  tagging: {}\n  preloaded_images:\n    enabled: "yes"\n`, "f.yml")).toThrow(
    'Invalid f.yml: line 4: containers.preloaded_images.enabled: expected boolean, got "yes"',
  );
});
