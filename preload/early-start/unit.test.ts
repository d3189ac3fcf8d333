import { describe, expect, test } from "bun:test";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_EARLY_START_PATHS, earlyStartScript, earlyStartUnit, UNIT_NAME } from "./unit.ts";

describe("early-start unit", () => {
  test("systemd-analyze verify accepts the unit", async () => {
    const dir = await mkdtemp(join(tmpdir(), "early-start-"));
    try {
      const paths = { ...DEFAULT_EARLY_START_PATHS, scriptPath: join(dir, "compose-apps-early-start") };
      await writeFile(paths.scriptPath, earlyStartScript(paths));
      await chmod(paths.scriptPath, 0o755);
      await writeFile(join(dir, UNIT_NAME), earlyStartUnit(paths));
      const proc = Bun.spawn(["systemd-analyze", "verify", join(dir, UNIT_NAME)], { stdout: "pipe", stderr: "pipe" });
      const [code, err] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
      expect(err).toBe("");
      expect(code).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("runs only on a device that is not registered", () => {
    expect(earlyStartUnit()).toContain("ConditionPathExists=!/var/sota/sota.toml");
  });

  test("the script is valid sh that hands the default-apps list to fioup", async () => {
    const script = earlyStartScript();
    const proc = Bun.spawn(["sh", "-n", "-c", script], { stderr: "pipe" });
    expect(await proc.exited).toBe(0);
    expect(script).toContain("/var/lmp/default-apps");
    expect(script).toContain("early-start");
  });
});
