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

  test("puts the extra variables on top", () => {
    expect(childEnv({ NO_COLOR: "1", PATH: "/usr/bin" }, { PATH: "/bin" })).toEqual({ PATH: "/usr/bin", NO_COLOR: "1" });
  });
});

describe("a compose command fioup starts", () => {
  const saved = process.env.BUN_JSC_useJIT;
  afterEach(() => {
    if (saved === undefined) delete process.env.BUN_JSC_useJIT;
    else process.env.BUN_JSC_useJIT = saved;
  });

  test("does not inherit the daemon's BUN_JSC_useJIT=0 but gets the rest of its environment", async () => {
    process.env.BUN_JSC_useJIT = "0";
    process.env.FIOUP_CHILD_ENV_PROBE = "kept";
    const dir = mkdtempSync(join(tmpdir(), "fioup-child-env-"));
    try {
      // `sh -c env` in place of compose: compose's own arguments become sh's positional ones.
      const out = await new Compose(["sh", "-c", "env"], "unix:///probe.sock").up("probe", dir, "docker-compose.yml");
      const names = out.split("\n").map((l) => l.slice(0, l.indexOf("=")));
      expect(names.filter((n) => n.startsWith("BUN_JSC_"))).toEqual([]);
      expect(out).toContain("FIOUP_CHILD_ENV_PROBE=kept");
      expect(out).toContain("DOCKER_HOST=unix:///probe.sock");
    } finally {
      delete process.env.FIOUP_CHILD_ENV_PROBE;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
