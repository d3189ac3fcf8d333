/**
 * The runtime against a real private dockerd and Debian's docker-compose 1.29:
 * apps built into a blob store are installed, started, checked, stopped and
 * removed the way fioup does it on a device.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import tar from "tar-stream";
import { appManifest } from "../../lib/compose/app-manifest.ts";
import {
  BlobNotInStoreError,
  BundleIndexMismatchError,
  CorruptBlobError,
  DANGLING_GRACE,
  ImageLoadError,
  InvalidAppUriError,
  localTag,
  Runtime,
  UnsafeBundleError,
} from "../../fioup/runtime/index.ts";
import { DockerEngine, type EngineError } from "../../fioup/runtime/docker-engine.ts";
import { startDockerd, type DockerdHandle } from "../harness/dockerd.ts";
import { busyboxImageTar } from "../harness/images.ts";
import { freePort, run, tempDir } from "../harness/tmp.ts";
import { storeApp, uniq, type FixtureApp } from "./_fixtures.ts";

// bunfig's [test] timeout is not honoured by this Bun: set it here.
setDefaultTimeout(120_000);

/** One service entry; `init: true` so busybox as PID 1 stops at once on SIGTERM (compose stop/down stay fast). */
const svc = (name: string, image: string, extra = "") => `  ${name}:\n    image: ${image}\n    init: true\n${extra}`;

const HTTPD = { cmd: ["httpd", "-f", "-p", "8080", "-h", "/var/www"], files: { "/var/www/index.html": "hello from the store\n" } };

let dockerd: DockerdHandle;
let root: string;
let store: string;
let rt: Runtime;
const ns = `rt${uniq()}`;
const apps: string[] = [];

beforeAll(async () => {
  dockerd = await startDockerd();
  root = await tempDir("runtime-");
  store = join(root, "reset-apps");
  rt = new Runtime({ composeAppsRoot: join(root, "compose-apps"), storeRoot: store, dockerHost: dockerd.host });
});

afterAll(async () => {
  await Promise.all(apps.map((a) => rt.removeApp(a).catch(() => {})));
  await rt.pruneImages().catch(() => {});
  await dockerd?.stop();
});

async function app(name: string, images: Parameters<typeof storeApp>[1]["images"], compose: (refs: Record<string, string>) => string, files?: Record<string, string>): Promise<FixtureApp> {
  const full = `${name}-${uniq()}`;
  apps.push(full);
  return storeApp(store, { name: full, ns, images, compose, ...(files ? { files } : {}) });
}

async function get(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/`);
  return await res.text();
}

// Independent tests (own app names, ports and images) run together: most of their time is waiting on containers.
describe.concurrent("Runtime", () => {
  test("installs an app from the store and serves it on 127.0.0.1", async () => {
    const port = await freePort();
    const a = await app("web", { web: HTTPD }, (r) => `services:\n${svc("web", r.web!)}    ports:\n      - "127.0.0.1:${port}:8080"\n`, { "conf/app.env": "X=1\n" });
    expect(await rt.isInstalled(a)).toBe(false);
    const inst = await rt.installApp(a);

    // the installed compose file is the bundle's, byte for byte; the override names the local tag
    const dir = join(root, "compose-apps", a.name);
    const bundled = readFileSync(join(dir, "docker-compose.yml"), "utf8");
    expect(bundled).toContain(a.images.web!);
    expect(readFileSync(join(dir, "conf/app.env"), "utf8")).toBe("X=1\n");
    const tag = localTag(a.images.web!).full;
    expect(tag).toMatch(new RegExp(`/${ns}/web:fioup-[0-9a-f]{32}$`));
    expect(readFileSync(join(dir, ".fioup/images.yml"), "utf8")).toContain(tag);
    expect(inst.images).toEqual([{ service: "web", ref: a.images.web!, tag, imageId: a.imageIds.web! }]);
    expect((await rt.engine.inspectImage(tag))?.Id).toBe(a.imageIds.web!);
    expect(await rt.isInstalled(a)).toBe(true);
    expect((await rt.installedApps()).map((x) => x.name)).toContain(a.name);

    const [res] = await rt.startApps([a.name], { timeoutMs: 60_000 });
    expect(res?.error).toBeUndefined();
    expect(res?.ok).toBe(true);
    expect(await get(port)).toBe("hello from the store\n");

    const state = (await rt.appsState([a.name]))[a.name]!;
    expect(state.uri).toBe(a.uri);
    expect(state.state).toBe("healthy");
    expect(state.services).toHaveLength(1);
    expect(state.services[0]).toMatchObject({ name: "web", state: "running", image: a.images.web! });
    expect(state.services[0]!.hash).toMatch(/^[0-9a-f]{64}$/);

    await rt.stopApps([a.name]);
    const stopped = (await rt.appsState([a.name]))[a.name]!;
    expect(stopped.state).toBe("unhealthy");
    expect(stopped.services[0]!.state).toBe("exited");
    await expect(fetch(`http://127.0.0.1:${port}/`)).rejects.toThrow();

    await rt.removeApp(a.name);
    expect(existsSync(dir)).toBe(false);
    expect(await rt.engine.listContainers([`com.docker.compose.project=${a.name}`])).toEqual([]);
    expect(await rt.isInstalled(a)).toBe(false);
  });

  test("a reinstall reuses the loaded image and keeps the app serving", async () => {
    const port = await freePort();
    // a compose file with a `version:` key: compose v1 wants the override to carry the same one
    const a = await app("again", { web: HTTPD }, (r) => `version: "3.8"\nservices:\n${svc("web", r.web!)}    ports:\n      - "127.0.0.1:${port}:8080"\n`);
    await rt.installApp(a);
    const lines: string[] = [];
    await rt.installApp(a, { onProgress: (l) => lines.push(l) });
    expect(lines.some((l) => l.startsWith(`Image ${a.images.web} already loaded`))).toBe(true);
    const [res] = await rt.startApps([a.name], { timeoutMs: 60_000 });
    expect(res?.ok).toBe(true);
    expect(await get(port)).toBe("hello from the store\n");
  });

  test("a service that exits non-zero makes the app fail to start", async () => {
    const a = await app("crash", { job: { cmd: ["sh", "-c", "echo boom >&2; sleep 0.3; exit 3"] } }, (r) => `services:\n${svc("job", r.job!)}`);
    await rt.installApp(a);
    const [res] = await rt.startApps([a.name], { timeoutMs: 30_000 });
    expect(res?.ok).toBe(false);
    expect(res?.error).toContain("exited with code 3");
    expect(res?.error).toContain("boom");
    expect(res?.state.state).toBe("unhealthy");
  });

  test("a crash-looping service (restart: always) is reported failed", async () => {
    const a = await app("loop", { job: { cmd: ["sh", "-c", "exit 1"] } }, (r) => `services:\n${svc("job", r.job!)}    restart: always\n`);
    await rt.installApp(a);
    const [res] = await rt.startApps([a.name], { timeoutMs: 30_000 });
    expect(res?.ok).toBe(false);
    expect(res?.error).toMatch(/restart|exited with code 1/);
  });

  test("a one-shot service that exits 0 beside a server is fine", async () => {
    const port = await freePort();
    const a = await app(
      "oneshot",
      { web: HTTPD, init: { cmd: ["sh", "-c", "echo migrated; exit 0"] } },
      (r) => `services:\n${svc("init", r.init!)}${svc("web", r.web!)}    ports:\n      - "127.0.0.1:${port}:8080"\n`,
    );
    await rt.installApp(a);
    const [res] = await rt.startApps([a.name], { timeoutMs: 60_000 });
    expect(res?.error).toBeUndefined();
    expect(res?.ok).toBe(true);
    const init = res!.state.services.find((s) => s.name === "init");
    expect(init?.state).toBe("exited");
    expect(await get(port)).toBe("hello from the store\n");
  });

  test("start waits for a healthcheck to pass", async () => {
    const a = await app(
      "health",
      { web: { cmd: ["sh", "-c", "sleep 2; touch /tmp/ready; exec sleep 600"] } },
      (r) =>
        `services:\n${svc("web", r.web!)}    healthcheck:\n      test: ["CMD", "test", "-f", "/tmp/ready"]\n      interval: 1s\n      timeout: 1s\n      retries: 30\n`,
    );
    await rt.installApp(a);
    const t0 = Date.now();
    const [res] = await rt.startApps([a.name], { timeoutMs: 60_000 });
    expect(res?.error).toBeUndefined();
    expect(res?.ok).toBe(true);
    expect(Date.now() - t0).toBeGreaterThan(2000);
    expect(res?.state.services[0]?.health).toBe("healthy");
  });

  test("a service whose healthcheck fails is reported unhealthy", async () => {
    const a = await app(
      "sick",
      { web: { cmd: ["sleep", "600"] } },
      // A 10 s timeout: on a busy machine Docker's exec of `false` once took more than 1 s, and the
      // last check then said "exceeded timeout" instead of the exit code this test looks for.
      (r) => `services:\n${svc("web", r.web!)}    healthcheck:\n      test: ["CMD", "false"]\n      interval: 1s\n      timeout: 10s\n      retries: 2\n`,
    );
    await rt.installApp(a);
    const [res] = await rt.startApps([a.name], { timeoutMs: 60_000 });
    expect(res?.ok).toBe(false);
    expect(res?.error).toContain("unhealthy (last healthcheck exit code 1: no output)");
    expect(res?.state.services[0]?.health).toBe("unhealthy");
  });

  test("an app that does not become ready in time fails with a timeout", async () => {
    const a = await app(
      "slow",
      { web: { cmd: ["sleep", "600"] } },
      (r) => `services:\n${svc("web", r.web!)}    healthcheck:\n      test: ["CMD", "false"]\n      interval: 30s\n      retries: 3\n`,
    );
    await rt.installApp(a);
    const [res] = await rt.startApps([a.name], { timeoutMs: 3000 });
    expect(res?.ok).toBe(false);
    expect(res?.error).toContain("did not start within");
  });

  test("starting an app that is not installed is a failed result, not an exception", async () => {
    const [res] = await rt.startApps(["never-installed"]);
    expect(res).toMatchObject({ name: "never-installed", ok: false });
    expect(res?.error).toContain("not installed");
  });

  test("an image with a blob missing from the store is refused and the previous install stays", async () => {
    const port = await freePort();
    const a = await app("keep", { web: HTTPD }, (r) => `services:\n${svc("web", r.web!)}    ports:\n      - "127.0.0.1:${port}:8080"\n`);
    await rt.installApp(a);
    const dir = join(root, "compose-apps", a.name);
    const before = readFileSync(join(dir, ".fioup/app.json"), "utf8");

    // a new version of the same app whose image layer is not in the store
    const store2 = join(await tempDir("store2-"), "s");
    const b = await storeApp(store2, {
      name: a.name,
      ns,
      images: { web: { ...HTTPD, files: { "/var/www/index.html": "v2\n" } } },
      compose: (r) => `services:\n${svc("web", r.web!)}`,
    });
    const m = JSON.parse(readFileSync(join(store2, "blobs/sha256", b.images.web!.split("@sha256:")[1]!), "utf8"));
    rmSync(join(store2, "blobs/sha256", m.layers[0].digest.slice(7)));
    const rt2 = new Runtime({ composeAppsRoot: join(root, "compose-apps"), storeRoot: store2, dockerHost: dockerd.host });
    await expect(rt2.installApp(b)).rejects.toThrow(BlobNotInStoreError);
    expect(readFileSync(join(dir, ".fioup/app.json"), "utf8")).toBe(before);
    expect(await rt.isInstalled(a)).toBe(true);
  });

  test("a corrupt layer in the store fails the load with the engine's reason", async () => {
    const s = join(await tempDir("store3-"), "s");
    const a = await storeApp(s, { name: `bad-${uniq()}`, ns, images: { web: { cmd: ["true"], files: { "/x": uniq() } } }, compose: (r) => `services:\n${svc("web", r.web!)}` });
    const m = JSON.parse(readFileSync(join(s, "blobs/sha256", a.images.web!.split("@sha256:")[1]!), "utf8"));
    // A layer that is a valid gzip of different content: the engine's diff_id check must catch it.
    writeFileSync(join(s, "blobs/sha256", m.layers[0].digest.slice(7)), Bun.gzipSync(new Uint8Array(1024)));
    const r = new Runtime({ composeAppsRoot: join(root, "compose-apps"), storeRoot: s, dockerHost: dockerd.host });
    await expect(r.installApp(a)).rejects.toThrow(ImageLoadError);
    expect(existsSync(join(root, "compose-apps", a.name))).toBe(false);
  });

  test("a multi-platform image index loads the host platform's image", async () => {
    const a = await app("multi", { web: { cmd: ["sleep", "600"], platforms: ["linux/arm64", "linux/amd64"] } }, (r) => `services:\n${svc("web", r.web!)}`);
    const inst = await rt.installApp(a, {});
    const want = process.arch === "arm64" ? "arm64" : "amd64";
    const cfg = await rt.engine.inspectImage(inst.images[0]!.tag);
    expect(cfg?.Id).toBe(inst.images[0]!.imageId);
    const arch = (await (await fetch(`http://localhost/v1.41/images/${encodeURIComponent(inst.images[0]!.tag)}/json`, { unix: dockerd.socket } as RequestInit)).json()) as { Architecture: string };
    expect(arch.Architecture).toBe(want);
  });

  test("a malicious bundle is refused: nothing written outside and no app dir", async () => {
    const cases: { entries: { name: string; content?: string; type?: "symlink" | "link"; linkname?: string }[]; index: Record<string, string>; err: new (...a: any[]) => Error }[] = [
      { entries: [{ name: "docker-compose.yml", content: "services: {}\n" }, { name: "../../../outside-evil", content: "x" }], index: { "docker-compose.yml": shaOf("services: {}\n") }, err: UnsafeBundleError },
      { entries: [{ name: "evil", type: "symlink", linkname: "../../.." }], index: {}, err: UnsafeBundleError },
      { entries: [{ name: "docker-compose.yml", content: "tampered" }], index: { "docker-compose.yml": shaOf("original") }, err: BundleIndexMismatchError },
    ];
    for (const c of cases) {
      const name = `evil-${uniq()}`;
      const uri = await storeRawBundle(name, c.entries, c.index);
      await expect(rt.installApp({ name, uri })).rejects.toThrow(c.err);
      expect(existsSync(join(root, "compose-apps", name))).toBe(false);
      expect(existsSync(join(root, "outside-evil"))).toBe(false);
      expect(existsSync(join(root, "compose-apps", "..", "outside-evil"))).toBe(false);
    }
    expect(readdirSync(join(root, "compose-apps")).filter((n) => n.includes("evil"))).toEqual([]);
  });

  test("a bundle index blob that does not match its digest is refused", async () => {
    const a = await app("tamper", { web: { cmd: ["true"] } }, (r) => `services:\n${svc("web", r.web!)}`);
    writeFileSync(join(store, "blobs/sha256", a.indexDigest.slice(7)), JSON.stringify({ "docker-compose.yml": shaOf("x") }));
    await expect(rt.installApp(a)).rejects.toThrow(CorruptBlobError);
    expect(existsSync(join(root, "compose-apps", a.name))).toBe(false);
  });

  test("an app URI whose last path part is not the app name is refused", async () => {
    await expect(rt.installApp({ name: "web", uri: `127.0.0.1:5999/${ns}/other@sha256:${"a".repeat(64)}` })).rejects.toThrow(InvalidAppUriError);
    await expect(rt.installApp({ name: "web", uri: `127.0.0.1:5999/${ns}/web:latest` })).rejects.toThrow(InvalidAppUriError);
  });
});

// Serial: pruning while another test installs could remove a tag that is loaded but not yet committed.
describe("Runtime.pruneImages", () => {
  test("pruneImages removes the tags of removed apps and keeps installed ones", async () => {
    const a = await app("prune-a", { web: { cmd: ["sleep", "600"], files: { "/a": uniq() } } }, (r) => `services:\n${svc("web", r.web!)}`);
    const b = await app("prune-b", { web: { cmd: ["sleep", "600"], files: { "/b": uniq() } } }, (r) => `services:\n${svc("web", r.web!)}`);
    const ia = await rt.installApp(a);
    const ib = await rt.installApp(b);
    await rt.removeApp(b.name);
    const removed = await rt.pruneImages();
    expect(removed).toContain(ib.images[0]!.tag);
    expect(removed).not.toContain(ia.images[0]!.tag);
    expect(await rt.engine.inspectImage(ib.images[0]!.tag)).toBeUndefined();
    expect((await rt.engine.inspectImage(ia.images[0]!.tag))?.Id).toBe(ia.images[0]!.imageId);
  });

  test("a prune another client runs at the same time (the engine answers 409) leaves pruneImages succeeding", async () => {
    // The engine runs one prune at a time and answers the others 409 ("a prune operation is
    // already running"), as when two clients share it: an update's cleanup must not fail for that.
    // Three other clients, each its own connection to the engine, prune back to back, so a prune is
    // nearly always running; ours are counted where pruneImages calls the engine.
    // (Only images older than DANGLING_GRACE, as fioup's own prune: the other test worker may be building.)
    let done = false;
    const others = Array.from({ length: 3 }, async () => {
      const other = new DockerEngine(dockerd.host);
      while (!done) await other.pruneImages({ olderThan: DANGLING_GRACE }).catch((e: EngineError) => (e.status === 409 ? undefined : Promise.reject(e)));
    });
    let ours409 = 0;
    const enginePrune = rt.engine.pruneImages;
    rt.engine.pruneImages = (opts) =>
      enginePrune.call(rt.engine, opts).catch((e: EngineError) => {
        if (e.status === 409) ours409++;
        throw e;
      });
    try {
      // Until the engine has refused one of our prunes (which pruneImages had to get past), at most
      // 200 rounds. Not longer: the daemon is shared with the other test worker, whose builds lose
      // an untagged intermediate image to a prune that lands between two steps.
      for (let i = 0; i < 200 && ours409 < 1; i++) await rt.pruneImages();
    } finally {
      done = true;
      rt.engine.pruneImages = enginePrune;
      await Promise.all(others);
    }
    expect(ours409).toBeGreaterThan(0); // the engine did refuse our prunes, and pruneImages still succeeded
  });

  test("the prune leaves a dangling image made a moment ago (another client's build step) and removes an old one", async () => {
    const tag = `rt-dangle/${ns}:x`;
    await dockerd.docker("load", "-i", await busyboxImageTar({ tag, files: { "/o": uniq() } }));
    const oldId = (await dockerd.docker("image", "inspect", "-f", "{{.Id}}", tag)).trim();
    // The tag moves to another image: the first one is dangling, and was created long ago (the harness's images say 1970).
    await dockerd.docker("load", "-i", await busyboxImageTar({ tag, files: { "/o": uniq() } }));
    // An untagged image created now, as the legacy builder leaves each step until the next one.
    const dir = await tempDir("rt-step-");
    writeFileSync(join(dir, "step"), uniq());
    await run(["tar", "-cf", join(dir, "step.tar"), "-C", dir, "step"]);
    const freshId = (await dockerd.docker("import", join(dir, "step.tar"))).trim();
    try {
      expect((await rt.engine.inspectImage(oldId))?.RepoTags ?? []).toEqual([]);
      await rt.pruneImages();
      expect(await rt.engine.inspectImage(oldId)).toBeUndefined();
      expect((await rt.engine.inspectImage(freshId))?.Id).toBe(freshId);
    } finally {
      await dockerd.docker("rmi", "-f", freshId, tag).catch(() => "");
    }
  });
});

const shaOf = (s: string) => `sha256:${new Bun.CryptoHasher("sha256").update(s).digest("hex")}`;

/** Puts a hand-made (possibly malicious) bundle, its index and an app manifest into the store; returns the app URI. */
async function storeRawBundle(name: string, entries: { name: string; content?: string; type?: "symlink" | "link"; linkname?: string }[], index: Record<string, string>): Promise<string> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const e of entries) {
    await new Promise<void>((res, rej) => {
      const cb = (err?: Error | null) => (err ? rej(err) : res());
      if (e.type) pack.entry({ name: e.name, type: e.type, linkname: e.linkname }, cb);
      else pack.entry({ name: e.name, size: Buffer.byteLength(e.content ?? "") }, e.content ?? "", cb);
    });
  }
  pack.finalize();
  await done;
  const bundle = gzipSync(Buffer.concat(chunks));
  const indexBytes = new TextEncoder().encode(JSON.stringify(index));
  mkdirSync(join(store, "blobs/sha256"), { recursive: true });
  const put = (bytes: Uint8Array) => {
    const d = shaOfBytes(bytes);
    writeFileSync(join(store, "blobs/sha256", d.slice(7)), bytes);
    return d;
  };
  const bundleDigest = put(bundle);
  const indexDigest = put(indexBytes);
  const m = appManifest({ digest: bundleDigest, size: bundle.length }, { digest: indexDigest, size: indexBytes.length });
  put(m.bytes);
  return `127.0.0.1:5999/${ns}/${name}@${m.digest}`;
}

const shaOfBytes = (b: Uint8Array) => `sha256:${new Bun.CryptoHasher("sha256").update(b).digest("hex")}`;

// Alone, after the concurrent tests: it removes an image tag those tests share.
describe("Runtime recovery", () => {
  test("an installed app whose images the engine lost (a power cut, a prune) starts: they are loaded again from the store", async () => {
    const port = await freePort();
    const a = await app("lostimg", { web: HTTPD }, (r) => `services:\n${svc("web", r.web!)}    ports:\n      - "127.0.0.1:${port}:8080"\n`);
    const inst = await rt.installApp(a);
    const tag = inst.images[0]!.tag;
    await rt.engine.removeImage(tag, { force: true });
    expect(await rt.engine.inspectImage(tag)).toBeUndefined();
    const [res] = await rt.startApps([a.name], { timeoutMs: 60_000 });
    expect(res?.error).toBeUndefined();
    expect(res?.ok).toBe(true);
    expect((await rt.engine.inspectImage(tag))?.Id).toBe(a.imageIds.web!);
    expect(await get(port)).toBe("hello from the store\n");
    await rt.stopApps([a.name]);
  });
});
