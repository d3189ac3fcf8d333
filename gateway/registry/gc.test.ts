import { describe, expect, spyOn, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import * as fsp from "node:fs/promises";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRegistry } from "./registry.ts";
import { acquireLock } from "../../lib/fs/pid-lock.ts";
import { dropLinks, gc, GcRunningError, NotRegistryStorageError, takeBlob } from "./gc.ts";
import { UnreachableContentError } from "./untargeted.ts";
import { RegistryStorage, STORAGE_ID_FILE } from "./storage.ts";
import { BUNDLE_INDEX_DIGEST_ANNOTATION } from "../../lib/compose/app-format.ts";

const sha256 = (b: string) => `sha256:${new Bun.CryptoHasher("sha256").update(b).digest("hex")}`;

async function withRoot(fn: (root: string) => Promise<void>): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), "registry-gc-"));
  try {
    await fn(root);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

async function push(app: ReturnType<typeof createRegistry>, repo: string, data: string): Promise<string> {
  const digest = sha256(data);
  const res = await app.request(`/v2/${repo}/blobs/uploads/?digest=${digest}`, { method: "POST", body: data });
  expect(res.status).toBe(201);
  return digest;
}

/** Pushes `<repo>:v1`, an image of the empty config and one layer (`layer`, with `annotations`). */
async function pushImage(app: ReturnType<typeof createRegistry>, repo = "main/app", data = "layer", annotations?: Record<string, string>): Promise<{ layer: string; manifest: string }> {
  const cfg = await push(app, repo, "{}");
  const layer = await push(app, repo, data);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.empty.v1+json", digest: cfg, size: 2 },
    layers: [{ mediaType: "application/octet-stream", digest: layer, size: data.length, ...(annotations ? { annotations } : {}) }],
  });
  expect((await app.request(`/v2/${repo}/manifests/v1`, { method: "PUT", body: manifest, headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" } })).status).toBe(201);
  return { layer, manifest };
}

describe("gc", () => {
  test("removes blobs no manifest references and keeps the rest", async () => {
    await withRoot(async (root) => {
      const app = createRegistry({ root, authorize: () => true });
      const orphan = await push(app, "main/app", "orphan");
      const { layer, manifest } = await pushImage(app);

      // Within the grace period nothing goes.
      expect((await gc(root)).blobsRemoved).toBe(0);

      const result = await gc(root, { graceMs: 0 });
      expect(result.blobsRemoved).toBe(1);
      expect(result.bytesFreed).toBe(6);
      expect(existsSync(join(root, "blobs", "sha256", orphan.slice(7)))).toBe(false);
      expect((await app.request(`/v2/main/app/blobs/${orphan}`, { method: "HEAD" })).status).toBe(404);
      expect((await app.request(`/v2/main/app/blobs/${layer}`, { method: "HEAD" })).status).toBe(200);
      expect((await app.request("/v2/main/app/manifests/v1")).status).toBe(200);

      // Once the manifest is deleted, everything it held goes too.
      const digest = sha256(manifest);
      expect((await app.request(`/v2/main/app/manifests/${digest}`, { method: "DELETE" })).status).toBe(202);
      const after = await gc(root, { graceMs: 0 });
      expect(after.blobsRemoved).toBe(3);
      expect(readdirSync(join(root, "blobs", "sha256"))).toEqual([]);
    });
  });

  test("keeps a compose app's bundle index, which its manifest names only in an annotation", async () => {
    await withRoot(async (root) => {
      const app = createRegistry({ root, authorize: () => true });
      const index = await push(app, "main/shop", "index");
      await pushImage(app, "main/shop", "bundle", { [BUNDLE_INDEX_DIGEST_ANNOTATION]: index });
      expect((await gc(root, { graceMs: 0 })).blobsRemoved).toBe(0);
      expect((await app.request(`/v2/main/shop/blobs/${index}`)).status).toBe(200);
    });
  });

  test("a manifest put again makes fresh all it references, its bundle index too, so a gc that marked before the put spares them", async () => {
    await withRoot(async (root) => {
      const app = createRegistry({ root, authorize: () => true });
      const index = await push(app, "main/shop", "index");
      const { manifest } = await pushImage(app, "main/shop", "bundle", { [BUNDLE_INDEX_DIGEST_ANNOTATION]: index });
      const old = new Date(Date.now() - 7_200_000);
      const blobs = join(root, "blobs", "sha256");
      for (const f of readdirSync(blobs)) utimesSync(join(blobs, f), old, old);
      const put = await app.request(`/v2/main/shop/manifests/${sha256(manifest)}`, { method: "PUT", body: manifest, headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" } });
      expect(put.status).toBe(201);
      // The manifest, its config, its layer and the index: all younger than the grace period of a gc started before the put.
      const fresh = readdirSync(blobs).filter((f) => statSync(join(blobs, f)).mtimeMs > old.getTime() + 3_600_000);
      expect(fresh.sort()).toEqual([sha256(manifest), sha256("{}"), sha256("bundle"), index].map((d) => d.slice(7)).sort());
    });
  });

  test("a manifest whose blob gc swept after publish found it is refused, not stored without it", async () => {
    await withRoot(async (root) => {
      const app = createRegistry({ root, authorize: () => true });
      const { manifest } = await pushImage(app);
      expect((await app.request(`/v2/main/app/manifests/${sha256(manifest)}`, { method: "DELETE" })).status).toBe(202);
      // publish's HEAD finds the blobs (pushes nothing), then gc sweeps them, then publish puts the manifest.
      expect((await app.request(`/v2/main/app/blobs/${sha256("layer")}`, { method: "HEAD" })).status).toBe(200);
      expect((await gc(root, { graceMs: 0 })).blobsRemoved).toBe(3);
      const put = await app.request("/v2/main/app/manifests/v1", { method: "PUT", body: manifest, headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" } });
      expect(put.status).toBe(400);
      expect(((await put.json()) as { errors: { code: string }[] }).errors[0]!.code).toBe("MANIFEST_BLOB_UNKNOWN");
      expect((await app.request("/v2/main/app/manifests/v1")).status).toBe(404);
    });
  });

  test("a blob the sweep took and a publish then uploaded again keeps its repository link: it is served", async () => {
    await withRoot(async (root) => {
      const app = createRegistry({ root, authorize: () => true });
      const storage = new RegistryStorage(root);
      const orphan = await push(app, "main/app", "orphan");
      const { layer, manifest } = await pushImage(app);
      expect((await app.request(`/v2/main/app/manifests/${sha256(manifest)}`, { method: "DELETE" })).status).toBe(202);
      // The sweep takes the layer and the orphan (unreferenced, old enough)...
      for (const d of [layer, orphan]) expect(await takeBlob(storage.blobPath(d), statSync(storage.blobPath(d)).mtimeMs)).toBe(true);
      // ...a publish finds the layer gone, uploads it again and puts its manifest...
      expect((await app.request(`/v2/main/app/blobs/${layer}`, { method: "HEAD" })).status).toBe(404);
      await push(app, "main/app", "layer");
      const put = await app.request("/v2/main/app/manifests/v1", { method: "PUT", body: manifest, headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" } });
      expect(put.status).toBe(201);
      // ...then gc drops the links to what it took: the layer's, stored again, stays; the orphan's goes.
      await dropLinks(storage, "main/app", new Set([layer, orphan].map((d) => d.slice(7))));
      expect(await (await app.request(`/v2/main/app/blobs/${layer}`)).text()).toBe("layer");
      expect(readdirSync(storage.layersDir("main/app")).sort()).toEqual([sha256("{}"), layer].map((d) => d.slice(7)).sort());
    });
  });

  test("a repository link a stopped gc had moved aside goes back if its blob is stored, else it goes", async () => {
    await withRoot(async (root) => {
      const app = createRegistry({ root, authorize: () => true });
      const storage = new RegistryStorage(root);
      const orphan = await push(app, "main/app", "orphan");
      const { layer } = await pushImage(app);
      const layers = storage.layersDir("main/app");
      rmSync(storage.blobPath(orphan)); // taken by the sweep
      for (const d of [layer, orphan]) renameSync(join(layers, d.slice(7)), join(layers, `.${d.slice(7)}.gc`));
      await gc(root);
      expect((await app.request(`/v2/main/app/blobs/${layer}`)).status).toBe(200);
      expect(readdirSync(layers).sort()).toEqual([sha256("{}"), layer].map((d) => d.slice(7)).sort());
    });
  });

  test("a blob uploaded again while the sweep takes the stored copy is stored from the upload, not lost", async () => {
    await withRoot(async (root) => {
      const app = createRegistry({ root, authorize: () => true });
      const storage = new RegistryStorage(root);
      const orphan = await push(app, "main/app", "orphan");
      const stored = storage.blobPath(orphan);
      // The sweep takes the stored copy just before the upload's commit makes it fresh (its first utimes of it).
      const utimes = fsp.utimes;
      let taken = false;
      const spy = spyOn(fsp, "utimes").mockImplementation(async (path, atime, mtime) => {
        if (path === stored && !taken) taken = await takeBlob(stored, statSync(stored).mtimeMs);
        return await utimes(path, atime, mtime);
      });
      try {
        const res = await app.request(`/v2/main/app/blobs/uploads/?digest=${orphan}`, { method: "POST", body: "orphan" });
        expect(taken).toBe(true);
        expect(res.status).toBe(201);
      } finally {
        spy.mockRestore();
      }
      expect(await (await app.request(`/v2/main/app/blobs/${orphan}`)).text()).toBe("orphan");
    });
  });

  test("a manifest refused for a blob gc took after publish found it says gc may have removed it, and to push again once gc ends", async () => {
    await withRoot(async (root) => {
      const app = createRegistry({ root, authorize: () => true });
      const storage = new RegistryStorage(root);
      const { layer, manifest } = await pushImage(app);
      expect((await app.request(`/v2/main/app/manifests/${sha256(manifest)}`, { method: "DELETE" })).status).toBe(202);
      const putV1 = async () => {
        const put = await app.request("/v2/main/app/manifests/v1", { method: "PUT", body: manifest, headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" } });
        expect(put.status).toBe(400);
        return ((await put.json()) as { errors: { code: string; message: string }[] }).errors[0]!;
      };
      const duringGc = `Manifest refused: its blob ${layer} is not in repository "main/app" while a registry gc runs (it may have just removed it): push it again once gc ends`;
      expect((await app.request(`/v2/main/app/blobs/${layer}`, { method: "HEAD" })).status).toBe(200);
      // The sweep has it aside, then has removed it (its link not dropped yet).
      const blob = storage.blobPath(layer);
      renameSync(blob, join(storage.blobsDir, `.${layer.slice(7)}.gc`));
      expect(await putV1()).toEqual({ code: "MANIFEST_BLOB_UNKNOWN", message: duringGc, detail: { digest: layer } } as never);
      rmSync(join(storage.blobsDir, `.${layer.slice(7)}.gc`));
      expect((await putV1()).message).toBe(duringGc);
      // gc ended, the link dropped: no gc to speak of.
      await dropLinks(storage, "main/app", new Set([layer.slice(7)]));
      expect((await putV1()).message).toBe(`Manifest refused: blob ${layer} is not in repository "main/app"`);
    });
  });

  test("a blob a stopped gc had moved aside to remove is put back, and kept while a manifest references it", async () => {
    await withRoot(async (root) => {
      const app = createRegistry({ root, authorize: () => true });
      const { layer } = await pushImage(app);
      const blobs = join(root, "blobs", "sha256");
      // gc moved it aside, then stopped (killed) before reading its mtime again: a put had just refreshed it.
      renameSync(join(blobs, layer.slice(7)), join(blobs, `.${layer.slice(7)}.gc`));
      expect((await gc(root, { graceMs: 0 })).blobsRemoved).toBe(0);
      expect((await app.request(`/v2/main/app/blobs/${layer}`)).status).toBe(200);
      expect(readdirSync(blobs).filter((f) => f.startsWith("."))).toEqual([]);
    });
  });

  test("a blob a stopped gc had moved aside does not replace the same blob uploaded again since: the fresh one stays", async () => {
    await withRoot(async (root) => {
      const app = createRegistry({ root, authorize: () => true });
      const orphan = await push(app, "main/app", "orphan");
      const blobs = join(root, "blobs", "sha256");
      const old = new Date(Date.now() - 7_200_000);
      utimesSync(join(blobs, orphan.slice(7)), old, old);
      // gc moved the old copy aside and was killed; a publish then uploaded it again (a fresh file).
      renameSync(join(blobs, orphan.slice(7)), join(blobs, `.${orphan.slice(7)}.gc`));
      await push(app, "main/app", "orphan");
      expect((await gc(root, { graceMs: 3_600_000 })).blobsRemoved).toBe(0);
      expect((await app.request(`/v2/main/app/blobs/${orphan}`)).status).toBe(200);
      expect(readdirSync(blobs).filter((f) => f.startsWith("."))).toEqual([]);
    });
  });

  test("a compose app's manifest put while the sweep has its bundle index aside is refused, not stored without it", async () => {
    await withRoot(async (root) => {
      const app = createRegistry({ root, authorize: () => true });
      const index = await push(app, "main/shop", "index");
      const { manifest } = await pushImage(app, "main/shop", "bundle", { [BUNDLE_INDEX_DIGEST_ANNOTATION]: index });
      const blobs = join(root, "blobs", "sha256");
      renameSync(join(blobs, index.slice(7)), join(blobs, `.${index.slice(7)}.gc`)); // the sweep's takeBlob, between its move and its removal
      const putV2 = () => app.request("/v2/main/shop/manifests/v2", { method: "PUT", body: manifest, headers: { "Content-Type": "application/vnd.oci.image.manifest.v1+json" } });
      const put = await putV2();
      expect(put.status).toBe(400);
      expect(((await put.json()) as { errors: { code: string }[] }).errors[0]!.code).toBe("MANIFEST_BLOB_UNKNOWN");
      // Removed already, while the gc still runs (another process holds its lock): refused too.
      rmSync(join(blobs, `.${index.slice(7)}.gc`));
      const gcProcess = Bun.spawn(["sleep", "30"]);
      const lock = acquireLock(join(root, ".gc.lock"), gcProcess.pid);
      try {
        const during = await putV2();
        expect(during.status).toBe(400);
        expect(((await during.json()) as { errors: { message: string }[] }).errors[0]!.message).toContain("while a registry gc runs");
        await expect(gc(root)).rejects.toThrow(GcRunningError);
      } finally {
        lock.release();
        gcProcess.kill();
        await gcProcess.exited;
      }
      // No gc: an index never pushed (a copy of the app from elsewhere) is no reason to refuse.
      expect((await putV2()).status).toBe(201);
    });
  });

  test("what a stopped gc had moved aside of a manifest goes back only with its manifest: a tag of one it had removed goes", async () => {
    await withRoot(async (root) => {
      const app = createRegistry({ root, authorize: () => true });
      const { manifest } = await pushImage(app);
      const hex = sha256(manifest).slice(7);
      const tags = join(root, "repositories/main/app/_manifests/tags");
      const revisions = join(root, "repositories/main/app/_manifests/revisions/sha256");
      // Stopped with the link and the tag aside: both go back, the manifest is judged again.
      renameSync(join(revisions, hex), join(revisions, `.${hex}.gc`));
      renameSync(join(tags, "v1"), join(tags, ".v1.gc"));
      await gc(root);
      expect((await app.request("/v2/main/app/manifests/v1")).status).toBe(200);
      // Stopped with the link removed and the tag aside: the tag goes too, not back pointing at nothing.
      rmSync(join(revisions, hex));
      renameSync(join(tags, "v1"), join(tags, ".v1.gc"));
      await gc(root);
      expect(readdirSync(tags)).toEqual([]);
      expect((await (await app.request("/v2/main/app/tags/list")).json()) as { tags: string[] }).toMatchObject({ tags: [] });
    });
  });

  test("the sweep takes a blob only if no put refreshed it since it was judged", async () => {
    await withRoot(async (root) => {
      const blob = join(root, "a".repeat(64));
      writeFileSync(blob, "x");
      const old = new Date(Date.now() - 7_200_000);
      utimesSync(blob, old, old);
      const judged = statSync(blob).mtimeMs;
      utimesSync(blob, new Date(), new Date()); // a manifest put referencing it, between the sweep's stat and its move
      expect(await takeBlob(blob, judged)).toBe(false);
      expect(readdirSync(root)).toEqual(["a".repeat(64)]);
      expect(await takeBlob(blob, statSync(blob).mtimeMs)).toBe(true);
      expect(readdirSync(root)).toEqual([]);
    });
  });

  test("removes stale upload sessions and keeps fresh ones", async () => {
    await withRoot(async (root) => {
      const app = createRegistry({ root, authorize: () => true });
      const fresh = (await app.request("/v2/a/blobs/uploads/", { method: "POST" })).headers.get("docker-upload-uuid")!;
      const stale = join(root, "uploads", "00000000-0000-0000-0000-000000000000");
      mkdirSync(stale, { recursive: true });
      writeFileSync(join(stale, "info.json"), "{}");
      writeFileSync(join(stale, "data"), "x");
      const old = new Date(Date.now() - 2 * 86_400_000);
      utimesSync(join(stale, "data"), old, old);
      const result = await gc(root, { graceMs: 0 });
      expect(result.uploadsRemoved).toBe(1);
      expect(readdirSync(join(root, "uploads"))).toEqual([fresh]);
    });
  });
  test("refuses a folder that is not laid out as the registry's storage, and removes nothing from it", async () => {
    await withRoot(async (root) => {
      // Old enough to be past any grace period, and shaped like what gc removes.
      const old = new Date(0);
      writeFileSync(join(root, "notes.txt"), "mine");
      mkdirSync(join(root, "uploads", "photos"), { recursive: true });
      writeFileSync(join(root, "uploads", "photos", "a.jpg"), "jpg");
      utimesSync(join(root, "uploads", "photos", "a.jpg"), old, old);
      const err = await gc(root, { graceMs: 0 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NotRegistryStorageError);
      expect((err as Error).message).toBe(
        `${root} is not the gateway registry's storage (it holds notes.txt, which the registry does not make: only blobs/, repositories/, uploads/, tmp/, deltas/): nothing removed`,
      );
      expect(readdirSync(join(root, "uploads", "photos"))).toEqual(["a.jpg"]);
    });
  });

  test("an empty folder is an empty registry; in uploads/ only upload sessions are swept", async () => {
    await withRoot(async (root) => {
      expect(await gc(root, { graceMs: 0 })).toEqual({ manifestsRemoved: 0, blobsRemoved: 0, bytesFreed: 0, uploadsRemoved: 0, blobsKept: 0 });
      // The id a replica's first start writes at the top (setting.ts) is the registry's own, and stays.
      writeFileSync(join(root, STORAGE_ID_FILE), "4f1c\n");
      expect((await gc(root, { graceMs: 0 })).blobsRemoved).toBe(0);
      expect(existsSync(join(root, STORAGE_ID_FILE))).toBe(true);
      const foreign = join(root, "uploads", "photos");
      mkdirSync(foreign, { recursive: true });
      writeFileSync(join(foreign, "data"), "not an upload session");
      utimesSync(join(foreign, "data"), new Date(0), new Date(0));
      expect((await gc(root, { graceMs: 0 })).uploadsRemoved).toBe(0);
      expect(existsSync(join(foreign, "data"))).toBe(true);
    });
  });

  test("untargeted: a manifest no target reaches goes with its blobs and tags; a target naming missing content removes nothing", async () => {
    await withRoot(async (root) => {
      const app = createRegistry({ root, authorize: () => true });
      await pushImage(app);
      const missing = `127.0.0.1:1/main/shop@${sha256("never pushed")}`;
      const err = await gc(root, { graceMs: 0, untargeted: [{ target: "intel-corei7-64-lmp-7", app: "shop", uri: missing }] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(UnreachableContentError);
      expect((err as Error).message).toStartWith(`Cannot tell what the targets need: target intel-corei7-64-lmp-7 app shop names main/shop@${missing.split("@")[1]}: `);
      expect((await app.request("/v2/main/app/manifests/v1")).status).toBe(200);

      // Within the grace period the manifest stays.
      expect((await gc(root, { untargeted: [] })).manifestsRemoved).toBe(0);
      const result = await gc(root, { graceMs: 0, untargeted: [] });
      expect(result).toMatchObject({ manifestsRemoved: 1, blobsRemoved: 3 });
      expect((await app.request("/v2/main/app/manifests/v1")).status).toBe(404);
      expect(existsSync(join(root, "repositories", "main", "app", "_manifests", "tags", "v1"))).toBe(false);
      expect(readdirSync(join(root, "blobs", "sha256"))).toEqual([]);
    });
  });
});
