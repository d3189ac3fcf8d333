/**
 * What the install counts on Docker's data root before loading an app's images
 * (layersToLoad, which the free-space check adds up): an image several services run is
 * loaded once, so its layers count once, however its references are written.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { DockerEngine } from "../../fioup/runtime/docker-engine.ts";
import { layersToLoad, loadImageFromStore } from "../../fioup/runtime/images.ts";
import { writeOciLayout } from "../harness/images.ts";
import { tempDir } from "../harness/tmp.ts";
import { randomBytes, startDockerd, type DockerdHandle } from "./_setup.ts";

let dockerd: DockerdHandle;

beforeAll(async () => {
  dockerd = await startDockerd();
}, 90_000);

afterAll(async () => {
  await dockerd?.stop();
});

test("an app with three services on one image counts that image's layers once before loading it", async () => {
  const store = await tempDir("store-");
  const lay = await writeOciLayout(store, { cmd: ["sleep", "3600"], layers: [{ "/big.bin": randomBytes(2 << 20) }] });
  const image = lay.images[0]!;
  const engine = new DockerEngine(dockerd.host);
  // Three services of one app, as a compose file may pin them: the same reference twice, and once under another name with a tag.
  const refs = [`reg.example/main/app@${lay.digest}`, `reg.example/main/app@${lay.digest}`, `reg.example/other/app:v1@${lay.digest}`];

  const layers = await layersToLoad(engine, store, refs, new Set());
  expect(layers.map((l) => l.layer.digest)).toEqual(image.layers.map((l) => l.digest));
  expect(layers.every((l) => l.unpack)).toBe(true);
  const bytes = layers.reduce((n, l) => n + l.layer.size, 0);
  expect(bytes).toBe(image.layers.reduce((n, l) => n + l.gz.length, 0));

  // Loaded once for the three services, the engine holds it: nothing left to count.
  for (const ref of refs) await loadImageFromStore(engine, store, ref);
  expect(await layersToLoad(engine, store, refs, new Set())).toEqual([]);
}, 60_000);
