import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sha256 } from "../../lib/oci/digest.ts";
import { startDockerd, type DockerdHandle } from "../../test/harness/dockerd.ts";
import { buildBusyboxImage, dockerSaveTar, type BuiltImage } from "../../test/harness/images.ts";
import { tempDir } from "../../test/harness/tmp.ts";
import { DockerEngine } from "../runtime/docker-engine.ts";
import { EngineLayerError, exportEngineLayer } from "./_engine-layer.ts";

let dockerd: DockerdHandle;
let img: BuiltImage;
let work: string;

beforeAll(async () => {
  dockerd = await startDockerd();
  work = await tempDir("engine-layer-");
  img = await buildBusyboxImage({ tag: `test/engine-layer:${process.pid}`, layers: [{ "/data/a.txt": `layer of ${process.pid}` }] });
  writeFileSync(join(work, "image.tar"), await dockerSaveTar(img));
  await dockerd.docker("load", "-i", join(work, "image.tar"));
}, 120_000);

afterAll(async () => {
  await dockerd?.docker("rmi", img.configDigest).catch(() => undefined);
  await dockerd?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("exportEngineLayer", () => {
  test("returns the engine's layer when its bytes hash to the diff_id", async () => {
    const index = img.layers.length - 1;
    const got = await exportEngineLayer(new DockerEngine(dockerd.host), img.configDigest, index, img.layers[index]!.diffId, join(work, "a.save"));
    expect(got.size).toBe(img.layers[index]!.tar.byteLength);
    expect(sha256(new Uint8Array(await got.tar.arrayBuffer()))).toBe(img.layers[index]!.diffId);
    await got.remove();
    expect(existsSync(join(work, "a.save"))).toBe(false);
  });

  test("refuses a layer that does not hash to the diff_id asked for, and leaves no scratch file", async () => {
    const index = img.layers.length - 1;
    const other = img.layers[0]!.diffId; // another layer's diff_id: the engine's layer at `index` is not it
    expect(other).not.toBe(img.layers[index]!.diffId);
    const p = exportEngineLayer(new DockerEngine(dockerd.host), img.configDigest, index, other, join(work, "b.save"));
    await expect(p).rejects.toThrow(EngineLayerError);
    await expect(p).rejects.toThrow(/not its diff_id/);
    expect(existsSync(join(work, "b.save"))).toBe(false);
  });

  test("says so when the engine has no such image", async () => {
    const missing = `sha256:${"0".repeat(64)}`;
    await expect(exportEngineLayer(new DockerEngine(dockerd.host), missing, 0, missing, join(work, "c.save"))).rejects.toThrow(EngineLayerError);
  });
});
