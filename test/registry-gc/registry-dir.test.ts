/**
 * A gateway whose registry is elsewhere (`gateway serve --registry-dir`, the replicas' shared
 * storage) keeps no DIR/registry, so `gateway registry gc --data DIR` without --registry-dir (the
 * daily timer's command as gateway/README.md once wrote it) refuses, naming the flag, instead of
 * collecting an empty folder ("kept 0"). A data dir an older gateway left with an empty
 * DIR/registry beside its --registry-dir loses it at the next start (makeRegistryDir); until then
 * `gc --untargeted` on it says to check --registry-dir, not to remove valid targets, and so does
 * the advice of a walk that finds a target's manifest missing (gateway/registry/untargeted.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { DATA_DIR_ENTRIES, makeRegistryDir, openDataDir } from "../../gateway/data-dir.ts";
import { freePort, httpdCompose, httpdImage, Publisher, pushImage, ROOT, startDockerRegistry, startTestGateway, type DockerRegistryHandle, type TestGateway } from "../fioup/_setup.ts";
import { run, tempDir } from "../harness/tmp.ts";

describe("the registry folder of a data dir opened with serve's --registry-dir", () => {
  test("makes that folder, and no DIR/registry", async () => {
    const dir = join(await tempDir("data-regdir-"), "data");
    const elsewhere = join(await tempDir("shared-registry-"), "registry");
    const data = await openDataDir(dir, { hosts: ["127.0.0.1"], registryDir: elsewhere });
    await makeRegistryDir(dir, elsewhere);
    expect(data.registryDir).toBe(elsewhere);
    expect(existsSync(elsewhere)).toBe(true);
    expect(existsSync(join(dir, "registry"))).toBe(false);
    // Every entry it made is one the data-dir checks know (with or without registry/).
    for (const e of readdirSync(dir)) expect(DATA_DIR_ENTRIES.has(e)).toBe(true);
  });

  test("without it, DIR/registry is the registry", async () => {
    const dir = join(await tempDir("data-regdir-"), "data");
    const data = await openDataDir(dir, { hosts: ["127.0.0.1"] });
    expect(existsSync(join(dir, "registry"))).toBe(false); // made once the database took the data dir
    await makeRegistryDir(dir);
    expect(data.registryDir).toBe(join(dir, "registry"));
    expect(existsSync(join(dir, "registry"))).toBe(true);
  });

  test("an empty DIR/registry an older gateway made beside --registry-dir is removed; one with content, or the --registry-dir itself, stays", async () => {
    const dir = join(await tempDir("data-regdir-"), "data");
    await makeRegistryDir(dir); // as gateways before this one left it
    const elsewhere = join(await tempDir("shared-registry-"), "registry");
    await makeRegistryDir(dir, elsewhere);
    expect(existsSync(join(dir, "registry"))).toBe(false);

    mkdirSync(join(dir, "registry", "blobs"), { recursive: true });
    await makeRegistryDir(dir, elsewhere);
    expect(existsSync(join(dir, "registry", "blobs"))).toBe(true);

    const inside = join(await tempDir("data-regdir-"), "data");
    await makeRegistryDir(inside, join(inside, "registry"));
    expect(existsSync(join(inside, "registry"))).toBe(true);
  });
});

describe("gateway registry gc on a data dir whose registry is elsewhere", () => {
  let upstream: DockerRegistryHandle;
  let gw: TestGateway;
  let shared: string;
  const gc = (...args: string[]) => run([process.execPath, join(ROOT, "gateway/main.ts"), "registry", "gc", "--data", gw.dataDir, ...args], { cwd: ROOT, allowFail: true });
  const sharedFiles = () => readdirSync(shared, { recursive: true }).map(String).sort();

  beforeAll(async () => {
    shared = join(await tempDir("shared-registry-"), "registry");
    [upstream, gw] = await Promise.all([startDockerRegistry(), startTestGateway(["--registry-dir", shared])]);
    const image = await pushImage(upstream, "test/regdir", "v1", httpdImage("regdir v1"));
    const pub = await Publisher.create(gw, upstream, { [`regdir${process.pid}/docker-compose.yml`]: httpdCompose(image, await freePort()) });
    await pub.publish(1);
  }, 120_000);

  afterAll(async () => {
    await Promise.all([gw?.stop(), upstream?.stop()]);
  });

  test("gateway serve --registry-dir makes no DIR/registry; the registry it serves is the --registry-dir", () => {
    expect(existsSync(join(gw.dataDir, "registry"))).toBe(false);
    expect(readdirSync(join(shared, "repositories", "main")).length).toBeGreaterThan(0);
  });

  test("--untargeted on the empty registry/ an older gateway left: refused, saying to check --registry-dir; nothing removed", async () => {
    // As a gateway before this fix left the data dir: an empty registry/ beside the one it serves.
    mkdirSync(join(gw.dataDir, "registry"), { recursive: true });
    const before = sharedFiles();
    const r = await gc("--untargeted", "--grace", "0s");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("holds no repository, yet the current targets name 1 apps");
    expect(r.stderr).toContain("--registry-dir");
    expect(r.stderr).not.toContain("gateway targets remove");
    expect(sharedFiles()).toEqual(before);
  });

  test("--untargeted on another registry that lacks a target's manifest: the advice first says to check --registry-dir; nothing removed", async () => {
    const other = await tempDir("other-registry-");
    mkdirSync(join(other, "repositories", "main", "other", "_manifests", "revisions", "sha256"), { recursive: true });
    mkdirSync(join(other, "blobs", "sha256"), { recursive: true });
    const r = await gc("--registry-dir", other, "--untargeted", "--grace", "0s");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("Cannot tell what the targets need");
    const advice = r.stderr.slice(r.stderr.indexOf("Nothing was removed;"));
    expect(advice).toContain("--registry-dir");
    expect(advice.indexOf("--registry-dir")).toBeLessThan(advice.indexOf("gateway targets remove"));
  });

  test("without registry/ (as serve leaves it now), gc without --registry-dir refuses naming the flag (exit 2); with it, gc runs", async () => {
    rmSync(join(gw.dataDir, "registry"), { recursive: true, force: true });
    const before = sharedFiles();
    for (const args of [[], ["--untargeted"], ["--dry-run"]]) {
      const r = await gc(...args);
      expect({ code: r.code, out: r.stdout }).toEqual({ code: 2, out: "" });
      expect(r.stderr).toContain("holds no registry/: gateway serve keeps this gateway's registry elsewhere (its --registry-dir); give gc the same --registry-dir DIR");
    }
    expect(existsSync(join(gw.dataDir, "registry"))).toBe(false);
    const r = await gc("--registry-dir", shared, "--untargeted", "--grace", "0s");
    expect({ code: r.code, err: r.code ? r.stderr : "" }).toEqual({ code: 0, err: "" });
    expect(r.stdout).toContain("removed 0 manifests no target reaches");
    expect(sharedFiles()).toEqual(before);
  });
});
