import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DockerEngine, EngineError, socketPathFromHost } from "./docker-engine.ts";

describe("socketPathFromHost", () => {
  test("takes the socket from a unix:// host, defaulting to /var/run/docker.sock", () => {
    expect(socketPathFromHost("unix:///tmp/d.sock")).toBe("/tmp/d.sock");
    expect(socketPathFromHost("")).toBe("/var/run/docker.sock");
  });

  test("refuses a tcp:// host", () => {
    expect(() => socketPathFromHost("tcp://127.0.0.1:2375")).toThrow(EngineError);
  });
});

describe("DockerEngine", () => {
  test("says why when nothing listens on the socket", async () => {
    const e = new DockerEngine("unix:///nonexistent/docker.sock");
    expect(await e.ping()).toBe(false);
    await expect(e.version()).rejects.toThrow("Cannot reach the Docker Engine at /nonexistent/docker.sock: no such socket (is Docker installed and running?");
  });

  test("a socket nobody listens on is 'nothing answers', not a typo in a url", async () => {
    const dir = mkdtempSync(join(tmpdir(), "engine-"));
    try {
      const path = join(dir, "docker.sock");
      writeFileSync(path, ""); // a leftover file where the socket was: connect() is refused
      await expect(new DockerEngine(`unix://${path}`).version()).rejects.toThrow(`Cannot reach the Docker Engine at ${path}: nothing answers on the socket (is dockerd running?)`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
