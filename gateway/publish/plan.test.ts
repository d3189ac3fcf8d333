import { describe, expect, test } from "bun:test";
import { mkdir, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { tempDir } from "../../test/harness/tmp.ts";
import type { ComposeService } from "../../lib/compose/compose-file.ts";
import { ComposeFileError } from "../../lib/compose/compose-file.ts";
import { BuildContextError, contextsInBundle, ImageResolveError, MissingBuildFileError, planService, topLevelBuild } from "./plan.ts";

async function repoDir(): Promise<string> {
  const dir = await tempDir("plan-");
  await mkdir(join(dir, "web", "api"), { recursive: true });
  await mkdir(join(dir, "hello"), { recursive: true });
  for (const d of ["web/api", "hello"]) await writeFile(join(dir, d, "Dockerfile"), "FROM scratch\n");
  return dir;
}

const svc = (s: Partial<ComposeService>): ComposeService => ({ name: "api", build: false, ...s });

describe("planService", () => {
  test("a build context in the app's subdirectory is its own build, named <app>/<service>", async () => {
    const dir = await repoDir();
    const app = { name: "web", dir: join(dir, "web"), composeFileName: "compose.yaml", gitIgnored: [], files: [] };
    const p = planService(dir, app, svc({ build: true, buildContext: "./api" }), [], "main");
    expect(p).toEqual({ build: expect.objectContaining({ name: "web/api", dir: join(dir, "web", "api"), from: "web/api/Dockerfile" }) });
    expect("build" in p && p.build.variant).toBeFalsy();
  });

  test("args, target or dockerfile give the build a variant tag; the same spec is the same key", async () => {
    const dir = await repoDir();
    const app = { name: "web", dir: join(dir, "web"), composeFileName: "compose.yaml", gitIgnored: [], files: [] };
    const a = planService(dir, app, svc({ build: true, buildContext: "api", buildArgs: { V: "1" } }), [], "main");
    const b = planService(dir, app, svc({ name: "other", build: true, buildContext: "./api/", buildArgs: { V: "1" } }), [], "main");
    const c = planService(dir, app, svc({ build: true, buildContext: "api", buildArgs: { V: "2" } }), [], "main");
    if (!("build" in a && "build" in b && "build" in c)) throw new Error("expected builds");
    expect(a.build.variant).toMatch(/^[0-9a-f]{8}$/);
    expect(a.build.key).toBe(b.build.key);
    expect(c.build.variant).not.toBe(a.build.variant);
  });

  test("the variant is the same for the same repo checked out in two folders (two CI workspaces), a build.dockerfile too", async () => {
    const variants = [];
    for (const dir of [await repoDir(), await repoDir()]) {
      await writeFile(join(dir, "web", "api", "Dockerfile.prod"), "FROM scratch\n");
      const app = { name: "web", dir: join(dir, "web"), composeFileName: "compose.yaml", gitIgnored: [], files: [] };
      const p = planService(dir, app, svc({ build: true, buildContext: "api", dockerfile: "Dockerfile.prod", buildTarget: "run" }), [], "main");
      if (!("build" in p)) throw new Error("expected a build");
      variants.push(p.build.variant);
    }
    expect(variants[0]).toMatch(/^[0-9a-f]{8}$/);
    expect(variants[1]).toBe(variants[0]);
  });

  test("a context naming a top-level image directory uses that build", async () => {
    const dir = await repoDir();
    const app = { name: "web", dir: join(dir, "web"), composeFileName: "compose.yaml", gitIgnored: [], files: [] };
    const p = planService(dir, app, svc({ build: true, buildContext: "../hello" }), [{ name: "hello", dir: join(dir, "hello") }], "main");
    expect(p).toEqual({ build: expect.objectContaining({ name: "hello", from: "hello/Dockerfile" }) });
  });

  test("a context or Dockerfile outside the repository is refused, through .. or a symlink", async () => {
    const dir = await repoDir();
    const app = { name: "web", dir: join(dir, "web"), composeFileName: "compose.yaml", gitIgnored: [], files: [] };
    expect(() => planService(dir, app, svc({ build: true, buildContext: "../.." }), [], "main")).toThrow(BuildContextError);
    expect(() => planService(dir, app, svc({ build: true, buildContext: "https://example.com/repo.git" }), [], "main")).toThrow(BuildContextError);
    expect(() => planService(dir, app, svc({ build: true, buildContext: "api", dockerfile: "../../../Dockerfile" }), [], "main")).toThrow("its Dockerfile");
    await symlink(tmpdir(), join(dir, "web", "out"));
    expect(() => planService(dir, app, svc({ build: true, buildContext: "out" }), [], "main")).toThrow('build context "out" is outside the repository');
  });

  test("a build context or Dockerfile the checkout lacks is refused before anything is built, saying where it looked", async () => {
    const dir = await repoDir();
    const app = { name: "web", dir: join(dir, "web"), composeFileName: "compose.yaml", gitIgnored: [], files: [] };
    expect(() => planService(dir, app, svc({ build: true, buildContext: "./nowhere" }), [], "main")).toThrow(MissingBuildFileError);
    expect(() => planService(dir, app, svc({ build: true, buildContext: "./nowhere" }), [], "main")).toThrow(
      'Cannot publish service "api" in app "web": its build context web/nowhere is not a folder of the checkout (build: ./nowhere in web/compose.yaml); commit it, or fix the path',
    );
    await mkdir(join(dir, "web", "worker"));
    expect(() => planService(dir, app, svc({ build: true, buildContext: "./worker" }), [], "main")).toThrow(
      'Cannot publish service "api" in app "web": there is no Dockerfile at web/worker/Dockerfile; commit one there, or name it with build.dockerfile in web/compose.yaml',
    );
    expect(() => planService(dir, app, svc({ build: true, buildContext: "api", dockerfile: "Dockerfile.prod" }), [], "main")).toThrow("there is no Dockerfile at web/api/Dockerfile.prod");
  });

  test("an image is a reference unless it names a top-level image directory", async () => {
    const dir = await repoDir();
    const app = { name: "web", dir: join(dir, "web"), composeFileName: "compose.yaml", gitIgnored: [], files: [] };
    const builds = [{ name: "hello", dir: join(dir, "hello") }];
    expect(planService(dir, app, svc({ image: "local/busybox:1" }), builds, "main")).toEqual({ ref: { registry: "docker.io", repository: "local/busybox", tag: "1" } });
    expect("build" in planService(dir, app, svc({ image: "hello" }), builds, "main")).toBe(true);
    expect("build" in planService(dir, app, svc({ image: "r.example:5000/main/hello" }), builds, "main")).toBe(true);
    expect(() => planService(dir, app, svc({ image: "Bad Ref" }), builds, "main")).toThrow(ImageResolveError);
  });
});

describe("planService: env_file and extends", () => {
  const app = (dir: string, over: Partial<{ files: { name: string; size: number }[]; gitIgnored: string[] }> = {}) => ({ name: "web", dir: join(dir, "web"), composeFileName: "compose.yaml", gitIgnored: [], files: [], ...over });

  test("an env_file outside the app folder is refused naming env_file and the path (exit 10): a device gets only the app folder", async () => {
    const dir = await repoDir();
    await writeFile(join(dir, "common.env"), "A=1\n");
    const outside = svc({ image: "nginx", envFiles: [{ path: "../common.env", required: true }] });
    expect(() => planService(dir, app(dir), outside, [], "main")).toThrow(ComposeFileError);
    expect(() => planService(dir, app(dir), outside, [], "main")).toThrow(
      'Invalid compose file web/compose.yaml, service "api": env_file ../common.env is outside the app folder web: a device gets only the app folder, so compose there would not find it; move the file into web/ and name it from there',
    );
    expect(() => planService(dir, app(dir), svc({ image: "nginx", envFiles: [{ path: "/etc/app.env", required: false }] }), [], "main")).toThrow("env_file /etc/app.env is outside the app folder web");
  });

  test("an env_file inside the app folder must be in its bundle: one git ignores, .composeappignores excludes or the checkout lacks is refused", async () => {
    const dir = await repoDir();
    await writeFile(join(dir, "web", "app.env"), "A=1\n");
    const uses = (path: string, required = true) => svc({ image: "nginx", envFiles: [{ path, required }] });
    expect(planService(dir, app(dir, { files: [{ name: "app.env", size: 4 }] }), uses("./app.env"), [], "main")).toEqual({ ref: expect.anything() });
    expect(() => planService(dir, app(dir, { gitIgnored: ["app.env"] }), uses("app.env"), [], "main")).toThrow("env_file app.env is not in the app's bundle: git ignores it, so the commit does not hold it");
    expect(() => planService(dir, app(dir), uses("app.env"), [], "main")).toThrow("env_file app.env is not in the app's bundle: web/.composeappignores excludes it");
    expect(() => planService(dir, app(dir), uses("conf/none.env"), [], "main")).toThrow("env_file conf/none.env is not in the app's bundle: there is no such file in the checkout");
    // Optional (required: false): compose on the device skips it when absent.
    expect(planService(dir, app(dir), uses("conf/none.env", false), [], "main")).toEqual({ ref: expect.anything() });
  });

  test("a service with extends is refused even with its own image: nothing follows extends to check and pin it", async () => {
    const dir = await repoDir();
    expect(() => planService(dir, app(dir), svc({ image: "nginx", extends: true }), [], "main")).toThrow('service "api": extends is not supported');
  });
});

describe("contextsInBundle", () => {
  test("a service built from a folder of its app folder: the bundle files under it are counted once per folder, the compose file never", async () => {
    const dir = await repoDir();
    // The sizes are the listing's (discover's): nothing is read again from disk.
    const from = "FROM scratch\n".length;
    const listed = [{ name: "api/", size: 0 }, { name: "api/Dockerfile", size: from }, { name: "api/big.bin", size: 3000 }, { name: "app.conf", size: 1 }];
    const app = { name: "web", dir: join(dir, "web"), composeFileName: "compose.yaml", gitIgnored: [], files: listed };
    const plans = new Map([
      ["web/api", planService(dir, app, svc({ build: true, buildContext: "./api" }), [], "main")],
      ["web/worker", planService(dir, app, svc({ name: "worker", build: true, buildContext: "api" }), [], "main")],
      ["hello/x", planService(dir, { ...app, name: "hello", dir: join(dir, "hello") }, svc({ build: true }), [], "main")],
    ]);
    // Two services built from one folder: named together, its files counted once.
    expect(contextsInBundle(app, plans)).toEqual([{ services: ["api", "worker"], folder: "api/", files: 2, bytes: 3000 + from }]);
    // The app folder itself as the context: every file but the compose file.
    await writeFile(join(dir, "web", "Dockerfile"), "FROM scratch\n");
    // With a service built from api/ inside it: one context, the files once.
    const whole = new Map([
      ["web/api", planService(dir, app, svc({ build: true, buildContext: "api" }), [], "main")],
      ["web/site", planService(dir, app, svc({ name: "site", build: true }), [], "main")],
    ]);
    expect(contextsInBundle({ ...app, files: [...listed, { name: "Dockerfile", size: from }, { name: "compose.yaml", size: 14 }] }, whole)).toEqual([
      { services: ["site", "api"], folder: "", files: 4, bytes: 3000 + 2 * from + 1 },
    ]);
    // The checkout reached through a symbolic link, the app folder also a top-level build (its
    // folder kept as given): the same folder, warned about.
    const link = join(await tempDir("plan-link-"), "repo");
    await symlink(dir, link);
    const viaLink = { ...app, dir: join(link, "web") };
    const top = new Map([["web/site", { build: topLevelBuild({ name: "web", dir: join(link, "web") }) }]]);
    expect(contextsInBundle(viaLink, top)).toEqual([{ services: ["site"], folder: "", files: 3, bytes: 3000 + from + 1 }]);
    // A context outside the app folder (a top-level build) is not in its bundle.
    expect(contextsInBundle(app, new Map([["web/api", plans.get("hello/x")!]]))).toEqual([]);
  });
});
