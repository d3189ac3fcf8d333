/** The Engine API client against a real private dockerd. */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { readFileSync } from "node:fs";
import { DockerEngine, EngineError } from "../../fioup/runtime/docker-engine.ts";
import { startDockerd, type DockerdHandle } from "../harness/dockerd.ts";
import { busyboxImageTar, buildBusyboxImage } from "../harness/images.ts";
import { uniq } from "./_fixtures.ts";

setDefaultTimeout(120_000);

let dockerd: DockerdHandle;
let engine: DockerEngine;
const repo = `engine-test-${uniq()}`;

beforeAll(async () => {
  dockerd = await startDockerd();
  engine = new DockerEngine(dockerd.host);
});
afterAll(async () => {
  for (const t of ["a", "b"]) await engine.removeImage(`${repo}:${t}`).catch(() => {});
  await dockerd?.stop();
});

describe("DockerEngine", () => {
  test("pings and reports the engine version", async () => {
    expect(await engine.ping()).toBe(true);
    const v = await engine.version();
    expect(v.ApiVersion >= "1.41").toBe(true);
    expect(v.Version).toMatch(/^\d+\.\d+/);
  });

  test("loads a docker-save tar from a stream, then inspects, tags and removes it", async () => {
    const opts = { cmd: ["true"], files: { "/id": uniq() }, tag: `${repo}:a` };
    const img = await buildBusyboxImage(opts);
    const tar = await busyboxImageTar(opts);
    const lines = await engine.loadImages(new Blob([readFileSync(tar)]).stream());
    expect(lines.join("\n")).toContain(`${repo}:a`);
    expect((await engine.inspectImage(`${repo}:a`))?.Id).toBe(img.configDigest);
    await engine.tagImage(img.configDigest, repo, "b");
    expect((await engine.inspectImage(`${repo}:b`))?.Id).toBe(img.configDigest);
    await engine.removeImage(`${repo}:b`);
    expect(await engine.inspectImage(`${repo}:b`)).toBeUndefined();
    expect((await engine.listImages()).some((i) => i.RepoTags?.includes(`${repo}:a`))).toBe(true);
  });

  test("surfaces a load error reported inside the progress stream", async () => {
    const bad = new Blob([new Uint8Array(2048)]).stream();
    await expect(engine.loadImages(bad)).rejects.toThrow(EngineError);
  });

  test("answers undefined for an unknown image or container, and filters containers by label", async () => {
    expect(await engine.inspectImage(`${repo}:nope`)).toBeUndefined();
    expect(await engine.inspectContainer("no-such-container-" + uniq())).toBeUndefined();
    expect(await engine.listContainers([`com.docker.compose.project=${repo}`])).toEqual([]);
  });
});
