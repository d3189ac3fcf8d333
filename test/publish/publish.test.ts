/**
 * `gateway publish` end to end: the three example apps from test/fixtures/containers published to
 * a real gateway (embedded registry, TUF targets), with images built by a real dockerd and a
 * "third-party" nginx:alpine served by a real docker-registry.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { sha256 } from "../../lib/oci/digest.ts";
import { RegistryClient, RegistryError, RegistryUnreachableError } from "../../lib/oci/registry-client.ts";
import { AdminApiError } from "../../lib/api/admin-client.ts";
import { ImageNotFoundError, ImageResolver } from "../../gateway/publish/images.ts";
import { discover } from "../../gateway/publish/discover.ts";
import { PushStats } from "../../gateway/publish/transfer.ts";
import { parseReference } from "../../lib/oci/reference.ts";
import { publish, type PublishOptions, type PublishResult } from "../../gateway/publish/publish.ts";
import { startDockerd, type DockerdHandle } from "../harness/dockerd.ts";
import { startDockerRegistry, type DockerRegistryHandle } from "../harness/docker-registry.ts";
import { startGateway, type GatewayHandle } from "./_gateway.ts";
import { fetchApp, gatewayRegistry, signedTargets } from "./_inspect.ts";
import { tempDir } from "../harness/tmp.ts";
import { commit, containersRepo, git, loadBaseImage, pushUpstreamNginx } from "./_setup.ts";

let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gw: GatewayHandle;
let nginxIndex: string;
let repo: string;
let first: PublishResult;
let publishToken: string;

const FACTORY_CONFIG = join(import.meta.dir, "factory-config.yml");

function opts(over: Partial<PublishOptions> = {}): PublishOptions {
  return {
    containersDir: repo,
    ref: "refs/heads/master",
    server: gw.url,
    token: publishToken,
    factoryConfig: FACTORY_CONFIG,
    mirrors: { "docker.io": upstream.host },
    insecureRegistries: [upstream.host],
    env: { ...process.env, ...dockerd.env },
    ...over,
  };
}

beforeAll(async () => {
  [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startGateway()]);
  await loadBaseImage(dockerd);
  nginxIndex = await pushUpstreamNginx(upstream);
  repo = await containersRepo();
  // CI holds only a publish token: push images and add targets, nothing else.
  const made = await gw.adminFetch("/admin/tokens", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ role: "publish", name: "ci" }) });
  publishToken = ((await made.json()) as { token: string }).token;
  first = await publish(opts());
}, 180_000);

afterAll(async () => {
  await Promise.all([gw?.stop(), upstream?.stop(), dockerd?.stop()]);
}, 180_000);

describe("gateway publish of the example apps", () => {
  test("every top-level dir with a compose file is an app, with a digest-pinned URI in the factory registry", () => {
    expect(first.apps.map((a) => a.name)).toEqual(["hello-world-app", "httpd", "simple-app"]);
    for (const a of first.apps) expect(a.uri).toMatch(new RegExp(`^${gw.host.replace(/\./g, "\\.")}/main/${a.name}@sha256:[0-9a-f]{64}$`));
  });

  test("the app artifact manifest has composeapp's shape and points at the bundle and its index", async () => {
    const client = gatewayRegistry(gw);
    for (const a of first.apps) {
      const app = await fetchApp(client, a.uri);
      expect(app.manifest.artifactType).toBe("application/vnd.fio+compose-app");
      expect(app.manifest.mediaType).toBe("application/vnd.oci.image.manifest.v1+json");
      expect(app.manifest.config.digest).toBe("sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
      expect(app.manifest.annotations).toEqual({ "compose-app": "v1" });
      expect(app.manifest.layers).toHaveLength(1);
      expect(app.manifest.layers[0].digest).toBe(a.bundleDigest);
      expect(app.manifest.layers[0].annotations["org.foundries.app.bundle.index.digest"]).toBe(a.indexDigest);
      expect(sha256(app.bundle)).toBe(a.bundleDigest);
      // The index lists every file of the bundle with its sha256, and nothing else.
      expect(Object.keys(app.index).sort()).toEqual(Object.keys(app.files).sort());
      for (const [p, d] of Object.entries(app.index)) expect(sha256(app.files[p]!)).toBe(d);
    }
  });

  test("bundles hold the pinned compose file; simple-app's ignored Dockerfile and app.sh are absent", async () => {
    const client = gatewayRegistry(gw);
    const apps = Object.fromEntries(await Promise.all(first.apps.map(async (a) => [a.name, await fetchApp(client, a.uri)] as const)));
    expect(apps["simple-app"]!.entries).toEqual(["docker-compose.yml"]);
    expect(apps["httpd"]!.entries.sort()).toEqual(["docker-compose.yml", "nginx.conf"]);
    expect(apps["httpd"]!.files["nginx.conf"]).toContain("return 200 'compose-apps';");
    expect(apps["hello-world-app"]!.entries.sort()).toEqual(["docker-compose.yml", "nginx.conf"]);

    const nginxPinned = `${gw.host}/main/nginx@${nginxIndex}`;
    expect(apps["httpd"]!.compose.services.web).toEqual({ image: nginxPinned, volumes: ["./nginx.conf:/etc/nginx/conf.d/default.conf"] });
    const simple = apps["simple-app"]!.compose.services.app;
    expect(simple.image).toMatch(new RegExp(`^${gw.host.replace(/\./g, "\\.")}/main/simple-app@sha256:[0-9a-f]{64}$`));
    expect(simple.environment).toEqual({ FROM_COMPOSE: "this came from docker-compose.yml" });
    const hw = apps["hello-world-app"]!.compose.services;
    expect(hw.app.image).toMatch(new RegExp(`/main/hello-world@sha256:[0-9a-f]{64}$`));
    expect(hw.nginx).toEqual({ image: nginxPinned, volumes: ["./nginx.conf:/etc/nginx/conf.d/default.conf"], ports: ["127.0.0.1:8080:80"], depends_on: ["app"] });
    expect(apps["hello-world-app"]!.compose.version).toBe("3");
  });

  test("every pinned image is in the gateway registry; built images also under the commit's short hash", async () => {
    const client = gatewayRegistry(gw);
    const short = (await git(repo, "rev-parse", "--short=7", "HEAD"));
    for (const a of first.apps) {
      for (const s of a.services) {
        const [name, digest] = s.pinned.slice(gw.host.length + 1).split("@") as [string, string];
        expect((await client.headManifest(name, digest))?.digest).toBe(digest);
      }
    }
    const simplePinned = first.apps.find((a) => a.name === "simple-app")!.services[0]!.pinned;
    expect((await client.headManifest("main/simple-app", short))?.digest).toBe(simplePinned.split("@")[1]!);
    expect((await client.headManifest("main/simple-app", `app-${short}`))?.digest).toBe(first.apps.find((a) => a.name === "simple-app")!.manifestDigest);
    // The built image is the fixture's Dockerfile: its config has the CMD it sets.
    const m = JSON.parse(new TextDecoder().decode((await client.getManifest("main/simple-app", simplePinned.split("@")[1]!)).bytes));
    const cfg = JSON.parse(new TextDecoder().decode(await client.getBlobBytes("main/simple-app", m.config.digest)));
    expect(cfg.config.Cmd).toEqual(["sh", "/usr/local/bin/app.sh"]);
  });

  test("master makes a signed target tagged master and production with every app", async () => {
    const { targets } = await signedTargets(gw);
    const name = `x86_64-linux-${first.version}`;
    expect(Object.keys(first.targets)).toEqual([name]);
    const t = targets[name]!;
    expect(t.custom.tags).toEqual(["master", "production"]);
    expect(t.custom.hardwareIds).toEqual(["x86_64-linux"]);
    expect(t.custom.targetFormat).toBe("OSTREE");
    expect(t.custom["containers-sha"]).toBe(await git(repo, "rev-parse", "HEAD"));
    expect(t.length).toBe(0);
    expect(Object.fromEntries(Object.entries(t.custom.docker_compose_apps).map(([k, v]) => [k, v.uri]))).toEqual(
      Object.fromEntries(first.apps.map((a) => [a.name, a.uri])),
    );
  });

  test("publishing the same commit again gives the same bundles and app digests and pushes 0 bytes", async () => {
    const lines: string[] = [];
    const again = await publish(opts({ log: (l) => lines.push(l) }));
    // The re-run makes a target with nothing new in it: it says so.
    expect(lines).toContain(`targets: x86_64-linux-${again.version} pins the same apps as x86_64-linux-${first.version}: nothing changed since`);
    expect(again.apps.map((a) => [a.uri, a.bundleDigest, a.indexDigest])).toEqual(first.apps.map((a) => [a.uri, a.bundleDigest, a.indexDigest]));
    expect(again.pushed.bytes).toBe(0);
    expect(again.pushed.blobs).toBe(0);
    expect(again.pushed.manifests).toBe(0);
    expect(again.version).toBeGreaterThan(first.version);
    // The build was reused, not unpacked again: the unpacked layer sizes come from the earlier target.
    expect(again.images.find((i) => i.name === "simple-app")!.reused).toBe(true);
    const sizes = (r: PublishResult) => Object.values(r.targets)[0]!.custom.docker_compose_apps["simple-app"]!.uncompressedLayerSizes;
    expect(Object.keys(sizes(first) ?? {}).length).toBeGreaterThan(0);
    expect(sizes(again)).toEqual(sizes(first));
    const client = gatewayRegistry(gw);
    const a1 = await fetchApp(client, first.apps[0]!.uri);
    const a2 = await fetchApp(client, again.apps[0]!.uri);
    expect(Buffer.from(a2.bundle).equals(Buffer.from(a1.bundle))).toBe(true);
  });

  test("another branch and several hardware ids: one target per hwid, tagged with the branch", async () => {
    await git(repo, "branch", "-f", "feature-x", "HEAD");
    const r = await publish(opts({ ref: "refs/heads/feature-x", hwids: ["x86_64-linux", "intel-corei7-64"], version: 1000 }));
    expect(Object.keys(r.targets).sort()).toEqual(["intel-corei7-64-1000", "x86_64-linux-1000"]);
    expect(r.platforms).toEqual({ "x86_64-linux": "linux/amd64", "intel-corei7-64": "linux/amd64" });
    const { targets } = await signedTargets(gw);
    expect(targets["intel-corei7-64-1000"]!.custom.tags).toEqual(["feature-x"]);
    expect(targets["intel-corei7-64-1000"]!.custom.hardwareIds).toEqual(["intel-corei7-64"]);
  });

  test("a hardware id whose platform the built images lack is refused, listing every gap", async () => {
    const before = await signedTargets(gw);
    const err = await publish(opts({ hwids: ["x86_64-linux", "arm64-linux"] })).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    const msg = (err as Error).message;
    // The built images are amd64 only; nginx:alpine offers arm64 too.
    expect(msg).toContain('app "simple-app" service "app": simple-app/Dockerfile (build) offers linux/amd64; arm64-linux needs linux/arm64/v8');
    expect(msg).toContain('app "hello-world-app" service "app": hello-world/Dockerfile (build) offers linux/amd64; arm64-linux needs linux/arm64/v8');
    expect(msg).not.toContain("nginx");
    expect(msg).not.toContain("x86_64-linux needs");
    expect(await signedTargets(gw)).toEqual(before);
  });

  test("an unknown hardware id is refused until mapped, by factory-config.yml containers.platforms or --hwid-platform", async () => {
    await expect(publish(opts({ hwids: ["board-x"], dryRun: true }))).rejects.toThrow('Cannot tell which platform hardware id "board-x" runs');
    const fc = join(await tempDir("fc-"), "factory-config.yml");
    await Bun.write(fc, "containers:\n  platforms:\n    board-x: linux/amd64\n    board-y: linux/arm64\n");
    const r = await publish(opts({ hwids: ["board-x"], factoryConfig: fc, dryRun: true }));
    expect(r.platforms).toEqual({ "board-x": "linux/amd64" });
    await expect(publish(opts({ hwids: ["board-y"], factoryConfig: fc, dryRun: true }))).rejects.toThrow("board-y needs linux/arm64/v8");
    const flag = await publish(opts({ hwids: ["board-y"], factoryConfig: fc, hwidPlatforms: { "board-y": "linux/amd64" }, dryRun: true }));
    expect(flag.platforms).toEqual({ "board-y": "linux/amd64" });
    // Foundries' form, the architectures the factory builds for: one of them is every device's.
    await Bun.write(fc, "containers:\n  platforms:\n    - amd64\n");
    expect((await publish(opts({ hwids: ["board-x"], factoryConfig: fc, dryRun: true }))).platforms).toEqual({ "board-x": "linux/amd64" });
    await Bun.write(fc, "containers:\n  platforms:\n    - amd64\n    - arm64\n");
    await expect(publish(opts({ hwids: ["board-x"], factoryConfig: fc, dryRun: true }))).rejects.toThrow('Cannot tell which platform hardware id "board-x" runs');
    expect((await publish(opts({ hwids: ["x86_64-linux"], factoryConfig: fc, dryRun: true }))).platforms).toEqual({ "x86_64-linux": "linux/amd64" });
  });

  test("HEAD must be the commit --ref names; --commit names it directly", async () => {
    const head = await commit(repo, { "NOTES.md": "not an app\n" });
    await git(repo, "branch", "-f", "stale", "HEAD~1");
    await expect(publish(opts({ ref: "refs/heads/stale", dryRun: true }))).rejects.toThrow(/HEAD is [0-9a-f]{12}, but refs\/heads\/stale is [0-9a-f]{12}/);
    await expect(publish(opts({ ref: "refs/heads/nowhere", dryRun: true }))).rejects.toThrow("pass --commit");
    await expect(publish(opts({ ref: "refs/heads/nowhere", commit: (await git(repo, "rev-parse", "HEAD~1")), dryRun: true }))).rejects.toThrow("but --commit names");
    const r = await publish(opts({ ref: "refs/heads/nowhere", commit: head, dryRun: true }));
    expect(r.commit).toBe(head);
  });

  test("--dry-run shows the new app digests but pushes and posts nothing", async () => {
    const before = await signedTargets(gw);
    await commit(repo, { "httpd/nginx.conf": "server { location / { return 200 'dry'; } }\n" });
    const r = await publish(opts({ dryRun: true }));
    const httpd = r.apps.find((a) => a.name === "httpd")!;
    expect(httpd.uri).not.toBe(first.apps.find((a) => a.name === "httpd")!.uri);
    expect(r.pushed.bytes).toBe(0);
    expect(await gatewayRegistry(gw).headManifest("main/httpd", httpd.manifestDigest)).toBeUndefined();
    expect(await signedTargets(gw)).toEqual(before);
    expect(r.version).toBeGreaterThan(first.version);
    expect(Object.keys(r.targets)).toEqual([`x86_64-linux-${r.version}`]);
    expect(before.targets[`x86_64-linux-${r.version}`]).toBeUndefined();
  });
});

describe("gateway publish of a service's own build", () => {
  test("context, dockerfile, target and args are built as written, pushed under <factory>/<app>/<service> and pinned", async () => {
    const r = await containersRepo({
      "shop/docker-compose.yml":
        "services:\n  api:\n    build:\n      context: ./api\n      dockerfile: Dockerfile.multi\n      target: run\n      args:\n        GREETING: ${GREETING:-hello}\n",
      "shop/api/Dockerfile.multi":
        "FROM fixtures/busybox:latest AS base\nARG GREETING\nRUN echo \"$GREETING from the build\" > /greeting\nFROM base AS run\nLABEL stage=run\nCMD [\"cat\", \"/greeting\"]\nFROM base AS never\nLABEL stage=never\n",
    });
    const res = await publish(opts({ containersDir: r, env: { ...process.env, ...dockerd.env, GREETING: "hi" } }));
    const img = res.images.find((i) => i.name === "shop/api")!;
    expect(img).toMatchObject({ source: "build", from: "shop/api/Dockerfile.multi", platforms: ["linux/amd64"] });
    const pinned = res.apps[0]!.services[0]!.pinned;
    expect(pinned).toBe(img.pinned);
    expect(pinned).toMatch(/\/main\/shop\/api@sha256:[0-9a-f]{64}$/);
    const client = gatewayRegistry(gw);
    const [name, digest] = pinned.slice(gw.host.length + 1).split("@") as [string, string];
    const m = JSON.parse(new TextDecoder().decode((await client.getManifest(name, digest)).bytes));
    const cfg = JSON.parse(new TextDecoder().decode(await client.getBlobBytes(name, m.config.digest)));
    expect(cfg.config.Labels).toEqual({ stage: "run" });
    expect(cfg.config.Cmd).toEqual(["cat", "/greeting"]);
    // The arg reached the build: the RUN line that used it is in the history.
    expect(JSON.stringify(cfg.history)).toContain("GREETING=hi");
  });
});

describe("gateway publish of one commit for two platforms", () => {
  test("the second platform's publish builds its own image: the build pushed for the first is not reused for it", async () => {
    // FROM scratch with a COPY: the engine builds it for arm64 without running anything arm64. The
    // file is this run's own, so no other build is in the engine's cache for it.
    const r = await containersRepo({
      "board/docker-compose.yml": "services:\n  app:\n    image: board\n",
      "board/Dockerfile": "FROM scratch\nCOPY hello /hello\n",
      "board/hello": `hello ${crypto.randomUUID()}\n`,
    });
    const amd64 = await publish(opts({ containersDir: r, platform: "linux/amd64", hwids: ["intel-corei7-64"] }));
    // Each leg of a CI matrix runs on its own engine; this engine's legacy builder would take the
    // amd64 build from its cache for arm64 too (FROM scratch has no platform to tell them apart).
    const local = (await dockerd.docker("images", "-q", `${gw.host}/main/board`)).split("\n").filter(Boolean);
    await dockerd.docker("rmi", "-f", ...new Set(local));
    const lines: string[] = [];
    const arm64 = await publish(opts({ containersDir: r, platform: "linux/arm64", hwids: ["raspberrypi4-64"], log: (l) => lines.push(l) }));
    const built = (res: PublishResult) => res.images.find((i) => i.name === "board")!;
    expect(built(amd64).platforms).toEqual(["linux/amd64"]);
    expect(built(arm64).platforms).toEqual(["linux/arm64/v8"]);
    expect(built(arm64).reused).toBeUndefined();
    expect(lines.join("\n")).toMatch(/image board: \S+\/main\/board:[0-9a-f]+ already pushed for this commit is linux\/amd64, not linux\/arm64\/v8: building it/);
    // The build for the platform asked is still reused when its publish runs again.
    const again = await publish(opts({ containersDir: r, platform: "linux/arm64", hwids: ["raspberrypi4-64"] }));
    expect(built(again)).toMatchObject({ pinned: built(arm64).pinned, reused: true });
  });
});

describe("gateway publish of a build context inside its app folder", () => {
  test("1 MiB or more of it in the bundle as well as in the image is warned about; listed in .composeappignores it is left out, and the warning with it", async () => {
    const r = await containersRepo({
      "shop/docker-compose.yml": "services:\n  api:\n    build: ./api\n",
      "shop/api/Dockerfile": "FROM fixtures/busybox:latest\nCOPY data.txt /data.txt\n",
      "shop/api/data.txt": "x".repeat(1536 * 1024),
    });
    const lines: string[] = [];
    const first = await publish(opts({ containersDir: r, dryRun: true, log: (l) => lines.push(l) }));
    expect(first.apps[0]!.files).toContain("api/data.txt");
    expect(lines).toContain(
      `warning: app shop: its bundle carries api/, the build context of service "api" (2 files, 1.5 MiB), which the image holds already, so every device downloads it twice; add api/ to shop/.composeappignores unless a service reads files from it at run time (a bind mount, an env_file)`,
    );
    await commit(r, { "shop/.composeappignores": "api/\n" });
    lines.length = 0;
    const second = await publish(opts({ containersDir: r, dryRun: true, log: (l) => lines.push(l) }));
    expect(second.apps[0]!.files).not.toContain("api/data.txt");
    expect(lines.filter((l) => l.includes("build context of service"))).toEqual([]);
  });
});

describe("gateway publish of a build context that holds git-ignored files", () => {
  /** An app "site" whose one service builds the app folder, copying all of it into the image. */
  const SITE = {
    "site/docker-compose.yml": "services:\n  web:\n    build: .\n",
    "site/Dockerfile": "FROM fixtures/busybox:latest\nCOPY . /srv/\nCMD [\"ls\", \"-a\", \"/srv\"]\n",
  };

  /** The uncompressed layers of a published image, as one string to search. */
  async function imageContent(res: PublishResult, image: string): Promise<string> {
    const pinned = res.images.find((i) => i.name === image)!.pinned;
    const [name, digest] = pinned.slice(gw.host.length + 1).split("@") as [string, string];
    const client = gatewayRegistry(gw);
    const m = JSON.parse(new TextDecoder().decode((await client.getManifest(name, digest)).bytes));
    let content = "";
    for (const l of m.layers as { digest: string }[]) {
      const blob = await client.getBlobBytes(name, l.digest);
      content += new TextDecoder("latin1").decode(blob[0] === 0x1f && blob[1] === 0x8b ? Bun.gunzipSync(blob as Uint8Array<ArrayBuffer>) : blob);
    }
    return content;
  }

  test("the image holds what git tracks and untracked files it does not ignore, not an ignored .env or folder, and publish says what it left out", async () => {
    const r = await containersRepo({
      ".gitignore": ".env\nnode_modules/\n",
      ...SITE,
      "site/index.html": "tracked-page-4711\n",
    });
    await Bun.write(join(r, "site", ".env"), "API_KEY=ignored-secret-4711\n");
    await Bun.write(join(r, "site", "node_modules", "dep", "index.js"), "ignored-module-4711\n");
    await Bun.write(join(r, "site", "notes.txt"), "untracked-note-4711\n");
    const lines: string[] = [];
    const res = await publish(opts({ containersDir: r, log: (l) => lines.push(l) }));
    expect(lines).toContain("image site: left out 2 paths git ignores, which the commit does not hold: .env, node_modules/, from its build context");
    const content = await imageContent(res, "site");
    // Booleans: the layers are megabytes, too long for a failure's message.
    expect({ tracked: content.includes("tracked-page-4711"), untracked: content.includes("untracked-note-4711") }).toEqual({ tracked: true, untracked: true });
    expect({ env: content.includes("ignored-secret-4711"), module: content.includes("ignored-module-4711") }).toEqual({ env: false, module: false });
    // The work tree is as it was: the copy was the build's, in publish's temp dir.
    expect(await Bun.file(join(r, "site", ".env")).text()).toBe("API_KEY=ignored-secret-4711\n");
  });

  test("a path git ignores that the context's .dockerignore names with ! (a CI step's output) is built in; the rest of .dockerignore still applies", async () => {
    const r = await containersRepo({
      ".gitignore": ".env\ndist/\n*.secret\n",
      ...SITE,
      "site/.dockerignore": "docs/\n!dist/app.js\n!conf\n",
      "site/index.html": "tracked-page-4712\n",
      "site/docs/guide.md": "tracked-doc-4712\n",
      "site/conf/app.conf": "tracked-conf-4712\n",
    });
    await Bun.write(join(r, "site", ".env"), "API_KEY=ignored-secret-4712\n");
    // In a folder a ! line names, but git ignores the file, not the folder: a developer's, left out.
    await Bun.write(join(r, "site", "conf", "db.secret"), "ignored-conf-secret-4712\n");
    await Bun.write(join(r, "site", "dist", "app.js"), "built-by-ci-4712\n");
    await Bun.write(join(r, "site", "dist", "app.js.map"), "source-map-4712\n");
    const lines: string[] = [];
    const res = await publish(opts({ containersDir: r, log: (l) => lines.push(l) }));
    expect(lines).toContain("image site: left out 3 paths git ignores, which the commit does not hold: .env, conf/db.secret, dist/app.js.map, from its build context");
    expect(lines).toContain("image site: kept 1 path git ignores in its build context, as its .dockerignore names them with !: dist/app.js");
    const content = await imageContent(res, "site");
    expect({ tracked: content.includes("tracked-page-4712"), conf: content.includes("tracked-conf-4712"), kept: content.includes("built-by-ci-4712") }).toEqual({ tracked: true, conf: true, kept: true });
    expect({
      env: content.includes("ignored-secret-4712"),
      confSecret: content.includes("ignored-conf-secret-4712"),
      map: content.includes("source-map-4712"),
      docs: content.includes("tracked-doc-4712"),
    }).toEqual({ env: false, confSecret: false, map: false, docs: false });
  });
});

describe("gateway publish to another OCI registry", () => {
  test("--registry pushes images and apps to a docker-registry and the targets point there", async () => {
    const other = await startDockerRegistry();
    try {
      const r = await publish(opts({ registry: other.host, insecureRegistries: [upstream.host, other.host] }));
      const client = new RegistryClient({ registry: other.host, scheme: "http" });
      for (const a of r.apps) {
        expect(a.uri.startsWith(`${other.host}/main/${a.name}@`)).toBe(true);
        const app = await fetchApp(client, a.uri);
        for (const svc of Object.values(app.compose.services) as { image: string }[]) {
          expect(svc.image.startsWith(`${other.host}/main/`)).toBe(true);
          const [name, digest] = svc.image.slice(other.host.length + 1).split("@") as [string, string];
          expect((await client.headManifest(name, digest))?.digest).toBe(digest);
        }
      }
      const { targets } = await signedTargets(gw);
      expect(targets[`x86_64-linux-${r.version}`]!.custom.docker_compose_apps.httpd!.uri).toBe(r.apps.find((a) => a.name === "httpd")!.uri);
    } finally {
      await other.stop();
    }
  });
});

describe("gateway publish errors publish nothing", () => {
  async function expectNothingPublished(p: Promise<unknown>, message: RegExp | string): Promise<void> {
    const before = await signedTargets(gw);
    await expect(p).rejects.toThrow(message);
    expect(await signedTargets(gw)).toEqual(before);
  }

  test("a service without image or build", async () => {
    const r = await containersRepo({ "bad/docker-compose.yml": "services:\n  web:\n    ports: ['80:80']\n", "ok/docker-compose.yml": "services:\n  a:\n    image: nginx:alpine\n" });
    await expectNothingPublished(publish(opts({ containersDir: r })), 'Invalid compose file bad/docker-compose.yml, service "web": needs an image or a build section');
    expect(await gatewayRegistry(gw).headManifest("main/ok", `app-${await git(r, "rev-parse", "--short=7", "HEAD")}`)).toBeUndefined();
  });

  test("an image that does not resolve names the service and the reference", async () => {
    const r = await containersRepo({ "web/docker-compose.yml": "services:\n  front:\n    image: nginx:no-such-tag\n" });
    const err = await publish(opts({ containersDir: r })).catch((e: Error) => e);
    expect(err).toBeInstanceOf(ImageNotFoundError);
    // One sentence: where publish looked (the local engine, then the registry through its mirror), once each.
    expect((err as Error).message).toMatch(/^Cannot find image "nginx:no-such-tag"\. Looked in the local engine at .*: not there; and in docker\.io through its mirror .*: .*404.* \(service "front" in app "web"\)$/);
    expect((err as Error).message.match(/answered 404/g)).toHaveLength(1); // (a random port may contain "404" too)
    await expectNothingPublished(publish(opts({ containersDir: r })), "Cannot find image");
  });

  test("an app's image named like its folder without a Dockerfile says publish builds a folder only with build:", async () => {
    const r = await containersRepo({ "shop/docker-compose.yml": "services:\n  api:\n    image: api\n", "shop/api/main.py": "print('hi')\n" });
    await expectNothingPublished(publish(opts({ containersDir: r })), "The app's folder shop/api/ holds no Dockerfile");
  });

  test("an image named like a folder of the checkout that publish does not build says why it built none", async () => {
    // Names of this process: the local engine is the shared test dockerd, where another file may hold an image "db".
    const [api, web, db, cache] = ["api", "web", "db", "cache"].map((n) => `${n}${process.pid}`) as [string, string, string, string];
    const r = await containersRepo({
      "shop/docker-compose.yml": `services:\n  api:\n    image: ${api}\n  web:\n    image: ${web}:1\n  db:\n    image: ${db}\n`,
      [`shop/${api}/main.py`]: "print('hi')\n", // the service's sources, but no Dockerfile and no build: key
      [`shop/${web}/Dockerfile`]: "FROM scratch\n", // a Dockerfile, but no build: key
      [`${db}/README.md`]: "schema\n", // a top-level folder without a Dockerfile
    });
    const { apps } = await discover(r);
    const images = new ImageResolver({
      dst: { client: gatewayRegistry(gw), stats: new PushStats(), dryRun: true, tmpDir: await tempDir("resolve-") },
      registryHost: gw.host,
      factory: "main",
      imageTag: "test",
      reuseBuilds: false,
      clientFor: (host) => new RegistryClient({ registry: host, scheme: "http" }),
      mirrors: { "docker.io": upstream.host },
      env: { ...process.env, ...dockerd.env },
      tmpDir: await tempDir("resolve-"),
      log: () => {},
    });
    const refused = async (image: string) => {
      const err = (await images.image(image, parseReference(image), { containersDir: r, app: apps[0]! }).catch((e: Error) => e)) as Error;
      expect(err).toBeInstanceOf(ImageNotFoundError);
      return err.message.slice(err.message.indexOf("404"));
    };
    expect(await refused(api)).toEndWith(
      `. The app's folder shop/${api}/ holds no Dockerfile, and a service is built from a folder only with a build: key (build: ./${api} in shop/docker-compose.yml, with a Dockerfile in shop/${api}/)`,
    );
    expect(await refused(`${web}:1`)).toEndWith(`. The app's folder shop/${web}/ has a Dockerfile, but a service is built from a folder only with a build: key (build: ./${web} in shop/docker-compose.yml)`);
    expect(await refused(db)).toEndWith(`. The folder ${db}/ of the containers checkout holds no Dockerfile: publish builds "image: ${db}" from a top-level folder only when it holds one`);
    // A name that is no folder, or a reference with a registry path, gets no such hint.
    expect(await refused(cache)).not.toContain("folder");
    expect(await refused(`someone/${api}`)).not.toContain("folder");
  });

  test("an ignore rule that removes the compose file", async () => {
    const r = await containersRepo({ "web/docker-compose.yml": "services:\n  a:\n    image: nginx:alpine\n", "web/.composeappignores": "*.yml\n" });
    await expectNothingPublished(publish(opts({ containersDir: r })), /excludes the compose file docker-compose.yml/);
  });

  test("a registry that refuses the push", async () => {
    const locked = await startDockerRegistry({ htpasswd: { user: "ci", password: "s3cret" } });
    try {
      const p = publish(opts({ registry: locked.host, insecureRegistries: [upstream.host, locked.host] }));
      // The image exists upstream: a refused push is a registry error (exit 15), not "image not found".
      await expect(p).rejects.toBeInstanceOf(RegistryError);
      await expectNothingPublished(p, /401|UNAUTHORIZED/);
    } finally {
      await locked.stop();
    }
  });

  test("a --registry speaking plain http without --insecure-registry: the refusal names the flag", async () => {
    const plain = await startDockerRegistry();
    try {
      const p = publish(opts({ registry: plain.host }));
      await expect(p).rejects.toBeInstanceOf(RegistryUnreachableError);
      await expectNothingPublished(p, `(if ${plain.host} speaks plain http, add --insecure-registry ${plain.host})`);
    } finally {
      await plain.stop();
    }
  });

  test("a viewer token is refused before anything is built or pushed, saying to give a publish token (exit 3)", async () => {
    const made = await gw.adminFetch("/admin/tokens", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ role: "viewer", name: "floor" }) });
    const viewer = ((await made.json()) as { token: string }).token;
    const r = await containersRepo({ "v/docker-compose.yml": "services:\n  a:\n    image: nginx:alpine\n", "v/NOTE": `${crypto.randomUUID()}\n` });
    const lines: string[] = [];
    const p = publish(opts({ containersDir: r, token: viewer, log: (l: string) => lines.push(l) }));
    await expect(p).rejects.toBeInstanceOf(AdminApiError);
    await expectNothingPublished(p, "This token is a viewer token: it may read the targets but not publish. Give --token (or GATEWAY_TOKEN) a publish token");
    expect(lines.filter((l) => /^image |push/.test(l))).toEqual([]);
  });

  test("a token whose pin does not match the gateway CA", async () => {
    const bad = gw.adminToken.replace(/\.[0-9a-f]{64}$/, "." + "0".repeat(64));
    await expectNothingPublished(publish(opts({ token: bad })), /does not match the token/);
  });
});
