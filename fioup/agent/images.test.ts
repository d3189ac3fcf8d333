/**
 * The agent's pull and load against a compose update's clean-up of the store they share: a
 * prune during the download or between the pull and the load takes nothing the load needs.
 * An in-process registry (gateway/registry) and an engine that only checks the loaded tar.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { Hono } from "hono";
import { createRegistry } from "../../gateway/registry/index.ts";
import { DeviceBlobStore } from "../../lib/device/store.ts";
import { BlobStore, pushImageFromStore, RegistryClient } from "../../lib/oci/index.ts";
import { buildBusyboxImage } from "../../test/harness/images.ts";
import { tempDir } from "../../test/harness/tmp.ts";
import type { DockerEngine, ImageInspect } from "../runtime/docker-engine.ts";
import { ImageSource } from "./images.ts";

let server: ReturnType<typeof Bun.serve>;

beforeAll(async () => {
  const app = new Hono();
  app.route("/", createRegistry({ root: await tempDir("agent-images-registry-"), authorize: () => true }));
  server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: app.fetch });
});
afterAll(() => server?.stop(true));

test("a prune of the store during the agent's pull, or between its pull and its load, takes nothing the load needs", async () => {
  const host = `127.0.0.1:${server.port}`;
  const img = await buildBusyboxImage({ files: { "/agent.txt": "leased\n" } });
  const src = new BlobStore(await tempDir("agent-images-src-"));
  for (const l of img.layers) await src.writeBytes(l.gz);
  await src.writeBytes(img.config);
  await src.writeBytes(img.manifest);
  await pushImageFromStore(new RegistryClient({ registry: host, scheme: "http" }), "kanto/app", "1", src, img.manifestDigest);

  const root = await tempDir("agent-images-store-");
  const store = new DeviceBlobStore(root);
  let prunes = 0;
  const prune = () => {
    store.prune(new Set()); // the compose update's clean-up: its target has none of the agent's blobs
    prunes++;
  };
  let loaded: string | undefined; // the image ID once a tar came in
  let loadedBytes = 0;
  const engine = {
    inspectImage: async (ref: string): Promise<ImageInspect | undefined> => {
      prune(); // the load looks the image up before it reads the store
      const id = ref.startsWith("sha256:") ? (ref === loaded ? ref : undefined) : loaded;
      return id ? { Id: id, RepoTags: [], RepoDigests: [], Size: 0 } : undefined;
    },
    loadImages: async (tar: ReadableStream<Uint8Array>) => {
      for await (const chunk of tar) loadedBytes += chunk.byteLength;
      loaded = img.configDigest;
      return [];
    },
    tagImage: async () => {},
  };
  const images = new ImageSource({ engine: engine as unknown as DockerEngine, storeRoot: root, registries: {} });
  const ref = `${host}/kanto/app:1`;
  expect(await images.ensure(ref, { onProgress: () => prune() })).toBe(ref);
  expect(loadedBytes).toBeGreaterThan(img.layers[0]!.gz.byteLength); // the layer went into the tar
  expect(prunes).toBeGreaterThan(3);
  // Released after the load: the next clean-up takes the agent's blobs, and no lease is left.
  expect(store.has(img.configDigest)).toBe(true);
  prune();
  expect(store.has(img.configDigest)).toBe(false);
  expect(existsSync(join(root, "leases")) ? readdirSync(join(root, "leases")) : []).toEqual([]);
});
