import { describe, expect, setDefaultTimeout, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Compose, ComposeNotFoundError, composeMajor, composeVersionMajor, dotEnvAsV1, findCompose, projectName } from "./compose.ts";

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

});

describe("composeMajor", () => {
  test("reads the version from what the command says, v1's words and v2's", () => {
    expect(composeVersionMajor("docker-compose version 1.29.2, build unknown\ndocker-py version: 5.0.3\n")).toBe(1);
    expect(composeVersionMajor("Docker Compose version v2.24.6\n")).toBe(2);
    expect(composeVersionMajor("Docker Compose version 2.20.2+ds1-0ubuntu1~22.04.1\n")).toBe(2);
    expect(composeVersionMajor("Docker Compose version v5.0.1\n")).toBe(5);
    expect(composeVersionMajor("Usage: docker-compose [OPTIONS]\n")).toBeUndefined();
  });

  test("a docker-compose is what it says it is: v1 for 1.29, v2 for a compose v2 binary under that name; asked once", async () => {
    const dir = mkdtempSync(join(tmpdir(), "compose-major-"));
    try {
      const v1 = Bun.which("docker-compose");
      if (v1 && composeVersionMajor(Bun.spawnSync([v1, "version"]).stdout.toString()) === 1) {
        mkdirSync(join(dir, "v1"));
        symlinkSync(v1, join(dir, "v1/docker-compose"));
        expect(await composeMajor(["docker-compose"], { PATH: join(dir, "v1") })).toBe(1);
      }
      // A compose v2 binary as a standalone docker-compose: the plugin's own binary where this machine
      // has one; Debian bookworm ships none, so otherwise one that answers as v2 does, word for word.
      mkdirSync(join(dir, "v2"));
      const plugin = ["/usr/libexec/docker/cli-plugins/docker-compose", "/usr/lib/docker/cli-plugins/docker-compose"].find((p) => existsSync(p));
      const asked = join(dir, "asked");
      if (plugin) symlinkSync(plugin, join(dir, "v2/docker-compose"));
      else writeFileSync(join(dir, "v2/docker-compose"), `#!/bin/sh\necho x >> ${asked}\n[ "$1" = version ] && echo "Docker Compose version v2.24.6"\n`, { mode: 0o755 });
      expect(await composeMajor(["docker-compose"], { PATH: join(dir, "v2") })).toBe(2);
      expect(await new Compose([join(dir, "v2/docker-compose")], "unix:///x").major()).toBe(2);
      if (!plugin) {
        expect(await composeMajor(["docker-compose"], { PATH: join(dir, "v2") })).toBe(2);
        expect(readFileSync(asked, "utf8")).toBe("x\nx\n"); // once per command: by name on that PATH, and by path
      }
      expect(await new Compose(["docker", "compose"], "unix:///x").major()).toBe(2);
      // One that does not say is not known (and asked again next time).
      writeFileSync(join(dir, "mute"), "#!/bin/sh\nexit 1\n", { mode: 0o755 });
      expect(await composeMajor([join(dir, "mute")])).toBeUndefined();
      // A docker-compose that does not say is read as v1 (the Python tool under load); the plugin stays v2.
      expect(dotEnvAsV1([join(dir, "docker-compose")], undefined)).toBe(true);
      expect(dotEnvAsV1(["docker-compose"], undefined)).toBe(true);
      expect(dotEnvAsV1([join(dir, "mute")], undefined)).toBe(false);
      expect(dotEnvAsV1(["docker", "compose"], undefined)).toBe(false);
      expect(dotEnvAsV1(["docker-compose"], 2)).toBe(false);
      expect(dotEnvAsV1(["docker", "compose"], 1)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
