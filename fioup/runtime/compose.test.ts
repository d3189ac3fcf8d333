import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Compose, ComposeNotFoundError, findCompose, projectName } from "./compose.ts";

// bunfig's [test] timeout is ignored by this Bun; these tests spawn processes and write files.
setDefaultTimeout(30_000);

describe("projectName", () => {
  test("normalises an app name the way both compose versions would", () => {
    expect(projectName("My.App_1-x")).toBe("myapp_1-x");
    expect(projectName("httpd")).toBe("httpd");
  });
});

describe("findCompose", () => {
  test("finds a compose command on this machine (v2 plugin first, else docker-compose)", async () => {
    const cmd = await findCompose();
    expect([["docker", "compose"], ["docker-compose"]]).toContainEqual(cmd);
  });

  test("takes a docker-compose on the PATH without starting it (no plugin); neither is an error", async () => {
    const dir = mkdtempSync(join(tmpdir(), "find-compose-"));
    try {
      await expect(findCompose({ PATH: dir })).rejects.toBeInstanceOf(ComposeNotFoundError);
      const ran = join(dir, "ran");
      writeFileSync(join(dir, "docker-compose"), `#!/bin/sh\ntouch ${ran}\n`);
      chmodSync(join(dir, "docker-compose"), 0o755);
      expect(await findCompose({ PATH: dir })).toEqual(["docker-compose"]);
      expect(existsSync(ran)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("reports v1 or v2 from the command", () => {
    expect(new Compose(["docker-compose"], "unix:///x").major).toBe(1);
    expect(new Compose(["docker", "compose"], "unix:///x").major).toBe(2);
  });
});
