import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { childEnv } from "./child-env.ts";
import { Compose } from "./runtime/compose.ts";

describe("childEnv", () => {
  test("drops BUN_JSC_* and keeps every other variable", () => {
    const env = childEnv({}, { BUN_JSC_useJIT: "0", BUN_JSC_useDFGJIT: "0", BUN_CONFIG_X: "1", PATH: "/bin", HOME: "/root" });
    expect(env).toEqual({ BUN_CONFIG_X: "1", PATH: "/bin", HOME: "/root" });
  });

  test("drops COMPOSE_PROFILES, COMPOSE_ENV_FILES and COMPOSE_DISABLE_ENV_FILE: the app's .env chooses its profiles, not the device's environment", () => {
    const env = childEnv({}, { COMPOSE_PROFILES: "debug", COMPOSE_ENV_FILES: "/etc/x.env", COMPOSE_DISABLE_ENV_FILE: "1", COMPOSE_HTTP_TIMEOUT: "120", PATH: "/bin" });
    expect(env).toEqual({ COMPOSE_HTTP_TIMEOUT: "120", PATH: "/bin" });
  });

  test("puts the extra variables on top", () => {
    expect(childEnv({ NO_COLOR: "1", PATH: "/usr/bin" }, { PATH: "/bin" })).toEqual({ PATH: "/usr/bin", NO_COLOR: "1" });
  });
});

describe("a compose command fioup starts", () => {
  const saved = { BUN_JSC_useJIT: process.env.BUN_JSC_useJIT, COMPOSE_PROFILES: process.env.COMPOSE_PROFILES };
  afterEach(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  test("does not inherit the daemon's BUN_JSC_useJIT=0 nor its COMPOSE_PROFILES but gets the rest of its environment", async () => {
    process.env.BUN_JSC_useJIT = "0";
    process.env.COMPOSE_PROFILES = "debug";
    process.env.FIOUP_CHILD_ENV_PROBE = "kept";
    const dir = mkdtempSync(join(tmpdir(), "fioup-child-env-"));
    try {
      // `sh -c env` in place of compose: compose's own arguments become sh's positional ones.
      const out = await new Compose(["sh", "-c", "env"], "unix:///probe.sock").up("probe", dir, "docker-compose.yml");
      const names = out.split("\n").map((l) => l.slice(0, l.indexOf("=")));
      expect(names.filter((n) => n.startsWith("BUN_JSC_"))).toEqual([]);
      expect(names).not.toContain("COMPOSE_PROFILES");
      expect(out).toContain("FIOUP_CHILD_ENV_PROBE=kept");
      expect(out).toContain("DOCKER_HOST=unix:///probe.sock");
    } finally {
      delete process.env.FIOUP_CHILD_ENV_PROBE;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
