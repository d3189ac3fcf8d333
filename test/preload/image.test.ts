/**
 * What a factory gets from `preload`, with a real gateway: an ext4 image that
 * passes `e2fsck -fn` and holds fioup's store, the preloaded target and the
 * early-start unit (read with debugfs, no mount); one of exactly --size bytes, and content too big
 * for its --size refused before a layer is fetched, naming the --size that holds it; a tar; and, for bad input
 * (a tampered targets.json, an app the target lacks, a corrupt cache, a
 * non-empty output directory, an --out file that is no earlier image), a clear
 * error and no image. ASSEMBLE_SYSTEM_IMAGE
 * "0" exits 0 writing nothing, and `--explain` prints why.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { GatewayHandle } from "../harness/gateway.ts";
import { run, tempDir } from "../harness/tmp.ts";
import { Publisher, httpdCompose, httpdImage, pushImage, startDockerRegistry, type DockerRegistryHandle } from "../fioup/_setup.ts";
import { asTestGateway, factoryConfig, preload, preloadConfig, startTestGateway } from "./_setup.ts";

const A = "pl2a";
const B = "pl2b";
let upstream: DockerRegistryHandle;
let gw: GatewayHandle;
let work: string;
let shortlistAB: string;

beforeAll(async () => {
  [upstream, gw] = await Promise.all([startDockerRegistry(), startTestGateway()]);
  const [a, b] = await Promise.all([
    pushImage(upstream, `test/${A}`, "v1", httpdImage(`${A} v1`)),
    pushImage(upstream, `test/${B}`, "v1", httpdImage(`${B} v1`)),
  ]);
  const pub = await Publisher.create(asTestGateway(gw), upstream, {
    [`${A}/docker-compose.yml`]: httpdCompose(a, 18080),
    [`${B}/docker-compose.yml`]: httpdCompose(b, 18081),
  });
  await pub.publish(1);
  work = await tempDir("preload-image-");
  shortlistAB = await factoryConfig(preloadConfig(`${A},${B}`));
}, 120_000);

afterAll(async () => {
  await Promise.all([gw?.stop(), upstream?.stop()]);
});

const fromGateway = () => ["--ref", "refs/heads/master", "--server", gw.url, "--token", gw.adminToken, "--hwid", "amd64-linux"];

/** Files preload may leave beside --out: none (its work dir is removed on success and failure, and so is a folder it made for --out when it fails). */
const leftovers = (out: string) => (existsSync(dirname(out)) ? readdirSync(dirname(out)).filter((f) => f.startsWith(".preload-") || f.endsWith(".partial")) : []);

async function debugfs(image: string, request: string): Promise<string> {
  return (await run(["debugfs", "-R", request, image])).stdout;
}

describe("preload output", () => {
  test("an ext4 image passes e2fsck -fn and holds the store, the preloaded target and the early-start unit", async () => {
    const out = join(work, "ext4", "rootfs.ext4");
    const r = await preload(["--factory-config", shortlistAB, ...fromGateway(), "--format", "ext4", "--out", out, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ target: "amd64-linux-1", apps: [A, B], format: "ext4" });

    const fsck = Bun.spawnSync(["e2fsck", "-fn", out], { stdout: "pipe", stderr: "pipe" });
    expect(fsck.exitCode, fsck.stdout.toString() + fsck.stderr.toString()).toBe(0);

    const blobs = await debugfs(out, "ls -l /var/sota/reset-apps/blobs/sha256");
    const hexes = [...blobs.matchAll(/\s([0-9a-f]{64})\s*$/gm)].map((m) => m[1]);
    expect(hexes.length).toBe(r.json.blobs);
    const target = JSON.parse(await debugfs(out, "cat /var/sota/preload/target.json"));
    expect(target).toMatchObject({ name: "amd64-linux-1", apps: [A, B] });
    // Every blob the target's app manifests name is in the image.
    for (const app of [A, B]) expect(hexes).toContain(target.entry.custom.docker_compose_apps[app].uri.split("@sha256:")[1]);
    expect(JSON.parse(await debugfs(out, "cat /var/sota/tuf/root.json")).signed._type).toBe("root");
    expect(await debugfs(out, "cat /usr/lib/sota/conf.d/50-preload.toml")).toContain(`compose_apps = "${A},${B}"`);
    expect(await debugfs(out, "cat /etc/systemd/system/compose-apps-early-start.service")).toContain("ConditionPathExists=!/var/sota/sota.toml");
    expect(await debugfs(out, "stat /etc/systemd/system/multi-user.target.wants/compose-apps-early-start.service")).toContain("Type: symlink");
    expect(await debugfs(out, "stat /usr/bin/compose-apps-early-start")).toMatch(/Mode:\s+0755/);
    expect(leftovers(out)).toEqual([]);
  }, 120_000);

  test("a viewer or publish token builds the same image as the admin token (read-only is enough)", async () => {
    const tokenOf = async (role: string) => {
      const res = await gw.adminFetch("/admin/tokens", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ role, name: `preload ${role}` }),
      });
      expect(res.status).toBe(201);
      return (await res.json()) as { id: string; token: string };
    };
    const args = (out: string) => ["--factory-config", shortlistAB, "--ref", "refs/heads/master", "--server", gw.url, "--hwid", "amd64-linux", "--out", out];
    for (const role of ["viewer", "publish"]) {
      const out = join(work, `token-${role}`);
      const r = await preload([...args(out), "--json", "--token", (await tokenOf(role)).token]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.json).toMatchObject({ target: "amd64-linux-1", apps: [A, B] });
      expect(readFileSync(join(out, "var/sota/preload/target.json"), "utf8")).toContain(`"amd64-linux-1"`);
    }

    // A revoked one is refused with the gateway's reason, and no image is written.
    const revoked = await tokenOf("viewer");
    expect((await gw.adminFetch(`/admin/tokens/${revoked.id}/revoke`, { method: "POST" })).status).toBeLessThan(300);
    const out = join(work, "token-revoked");
    const r = await preload([...args(out), "--token", revoked.token]);
    expect(r.code, r.stderr).toBe(30);
    expect(r.stderr).toMatch(/refused the token \(--token, or PRELOAD_TOKEN\): HTTP 403 for \S+ \((?:Viewer token|Token) refused: this token was revoked at /);
    expect(existsSync(out)).toBe(false);
  }, 120_000);

  test("a tar image lists the same store", async () => {
    const out = join(work, "tar", "rootfs.tar");
    const r = await preload(["--factory-config", shortlistAB, ...fromGateway(), "--format", "tar", "--out", out, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    const list = (await run(["tar", "-tf", out])).stdout.split("\n");
    expect(list.filter((l) => /^\.\/var\/sota\/reset-apps\/blobs\/sha256\/[0-9a-f]{64}$/.test(l)).length).toBe(r.json.blobs);
    expect(list).toContain("./var/sota/preload/target.json");
  }, 120_000);
});

describe("--size: an ext4 image to match a partition", () => {
  const fsck = (image: string) => Bun.spawnSync(["e2fsck", "-fn", image], { stdout: "pipe", stderr: "pipe" });

  test("the image is exactly that size, passes e2fsck -fn and holds the store", async () => {
    const out = join(work, "sized", "rootfs.ext4");
    const r = await preload(["--factory-config", shortlistAB, ...fromGateway(), "--format", "ext4", "--size", "70M", "--out", out, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(statSync(out).size).toBe(70 * 1024 * 1024);
    const check = fsck(out);
    expect(check.exitCode, check.stdout.toString() + check.stderr.toString()).toBe(0);
    expect(await debugfs(out, "cat /var/sota/preload/target.json")).toContain(`"amd64-linux-1"`);
  }, 120_000);

  test("content larger than --size is refused before a blob is fetched, saying the --size it needs, which then holds it", async () => {
    const out = join(work, "too-small", "rootfs.ext4");
    const cache = join(work, "too-small-cache");
    const r = await preload(["--factory-config", shortlistAB, ...fromGateway(), "--format", "ext4", "--size", "1M", "--cache", cache, "--out", out]);
    expect(r.code, r.stderr).toBe(50);
    const needs = /preload assemble: The image does not fit in --size 1\.0 MiB: its content takes [\d.]+ [KM]iB in ext4, and an ext4 of that size holds [\d.]+ KiB; it needs --size (\d+)M or more\n/.exec(r.stderr);
    expect(needs, r.stderr).not.toBeNull();
    expect(r.stderr).not.toMatch(/^\[\d+\/\d+\] layer/m);
    // The cache holds only the manifests read to resolve the apps (a few hundred bytes each), no layer.
    const cached = readdirSync(join(cache, "blobs/sha256")).map((f) => statSync(join(cache, "blobs/sha256", f)).size);
    expect(cached.filter((n) => n > 64 * 1024)).toEqual([]);
    expect(existsSync(out)).toBe(false);
    expect(leftovers(out)).toEqual([]);

    const again = await preload(["--factory-config", shortlistAB, ...fromGateway(), "--format", "ext4", "--size", `${needs![1]}M`, "--cache", cache, "--out", out]);
    expect(again.code, again.stderr).toBe(0);
    expect(statSync(out).size).toBe(Number(needs![1]) * 1024 * 1024);
    expect(fsck(out).exitCode).toBe(0);
  }, 120_000);

  test.each([
    [["--format", "ext4", "--size", "12X"], '--size takes a size such as 512M, 2G or a number of bytes (binary units: 512M is 512 MiB), not "12X"'],
    [["--format", "ext4", "--size", "0"], '--size takes a size such as 512M, 2G or a number of bytes (binary units: 512M is 512 MiB), not "0"'],
    [["--format", "tar", "--size", "512M"], "--size only applies to --format ext4 (a tar image has no fixed size)"],
    [["--size", "512M"], "--size only applies to --format ext4 (a dir image has no fixed size)"],
  ])("%p is bad usage (exit 2) before the gateway is asked", async (flags, message) => {
    const out = join(work, "bad-size");
    const r = await preload(["--factory-config", shortlistAB, "--ref", "refs/heads/master", "--server", "https://127.0.0.1:1", "--token", gw.adminToken, ...flags, "--out", out]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(`preload assemble: ${message}\n`);
    expect(existsSync(out)).toBe(false);
  });
});

describe("preload refuses bad input and writes no image", () => {
  test("a targets.json whose signature does not verify", async () => {
    const dir = await tempDir("preload-tuf-files-");
    const [root, targets] = await Promise.all(["1.root.json", "targets.json"].map(async (f) => {
      const res = await gw.adminFetch(`/repo/${f}`); // the admin token may read the TUF repo
      expect(res.status).toBe(200);
      return await res.text();
    }));
    writeFileSync(join(dir, "root.json"), root!);
    writeFileSync(join(dir, "targets.json"), targets!);
    const files = ["--targets", join(dir, "targets.json"), "--root", join(dir, "root.json")];

    // Untampered, the files verify and the image builds.
    const good = await preload(["--factory-config", shortlistAB, ...fromGateway(), ...files, "--out", join(work, "files-ok")]);
    expect(good.code, good.stderr).toBe(0);

    // One app URI changed, signatures left as they were.
    const doc = JSON.parse(targets!);
    const apps = doc.signed.targets["amd64-linux-1"].custom.docker_compose_apps;
    apps[A].uri = apps[B].uri.replace(`/${B}@`, `/${A}@`);
    writeFileSync(join(dir, "targets.json"), JSON.stringify(doc));
    const out = join(work, "tampered");
    const r = await preload(["--factory-config", shortlistAB, ...fromGateway(), ...files, "--out", out]);
    expect(r.code, r.stderr).toBe(21); // preload/exit-codes.ts: targets do not verify
    expect(r.stderr).toContain("is not signed by the targets keys of");
    expect(existsSync(out)).toBe(false);
    expect(leftovers(out)).toEqual([]);
  }, 120_000);

  test("an app the target does not have", async () => {
    const out = join(work, "missing-app");
    const fc = await factoryConfig(preloadConfig(`${A},no-such-app`));
    const r = await preload(["--factory-config", fc, ...fromGateway(), "--out", out]);
    expect(r.code, r.stderr).toBe(20); // no such target or app
    expect(r.stderr).toContain(`Target amd64-linux-1 has no app "no-such-app" (it has: ${A}, ${B})`);
    expect(existsSync(out)).toBe(false);
    expect(leftovers(out)).toEqual([]);
  }, 120_000);

  /** Fills a cache with one run, flips a byte of the blob `pick` chooses (bit rot, size kept), runs again. */
  async function corruptCacheRun(name: string, pick: (dir: string, first: any) => string) {
    const cache = join(work, `cache-${name}`);
    const firstOut = join(work, `cached-${name}-1`);
    const first = await preload(["--factory-config", shortlistAB, ...fromGateway(), "--cache", cache, "--out", firstOut, "--json"]);
    expect(first.code, first.stderr).toBe(0);
    expect(first.json.fetched).toBeGreaterThan(0);
    const dir = join(cache, "blobs/sha256");
    const hex = pick(dir, JSON.parse(readFileSync(join(firstOut, "var/sota/preload/target.json"), "utf8")));
    const bytes = new Uint8Array(readFileSync(join(dir, hex)));
    const mid = bytes.length >> 1;
    bytes[mid] = bytes[mid]! ^ 0x01;
    writeFileSync(join(dir, hex), bytes);

    const out = join(work, `cached-${name}-2`);
    const r = await preload(["--factory-config", shortlistAB, ...fromGateway(), "--cache", cache, "--out", out]);
    expect(r.code, r.stderr).toBe(40); // corrupt cache
    expect(r.stderr).toContain(`Cached blob sha256:${hex} is corrupt`);
    expect(r.stderr).toContain(`remove it from ${cache}`);
    expect(existsSync(out)).toBe(false);
    expect(leftovers(out)).toEqual([]);
    // The first image did not share the rotten file with the cache.
    const inFirst = new Uint8Array(readFileSync(join(firstOut, "var/sota/reset-apps/blobs/sha256", hex)));
    expect(new Bun.CryptoHasher("sha256").update(inFirst).digest("hex")).toBe(hex);
  }

  test("a cache holding a corrupt layer", async () => {
    await corruptCacheRun("layer", (dir) => readdirSync(dir).map((h) => ({ h, n: Bun.file(join(dir, h)).size })).sort((x, y) => y.n - x.n)[0]!.h);
  }, 120_000);

  test("a cache holding a corrupt app manifest", async () => {
    await corruptCacheRun("manifest", (_dir, target) => target.entry.custom.docker_compose_apps[A].uri.split("@sha256:")[1]);
  }, 120_000);

  test("a non-empty directory that is not an earlier image is never replaced", async () => {
    const out = await tempDir("precious-");
    writeFileSync(join(out, "keep.txt"), "mine");
    const r = await preload(["--factory-config", shortlistAB, ...fromGateway(), "--out", out]);
    expect(r.code, r.stderr).toBe(50); // the image cannot be written
    expect(r.stderr).toContain("is not empty and holds no earlier preload image");
    expect(readdirSync(out)).toEqual(["keep.txt"]);
  }, 120_000);

  test.each(["tar", "ext4"])("%s: an --out file that is not an earlier image of that format is never replaced; an earlier one is", async (format) => {
    const dir = await tempDir(`precious-${format}-`);
    const precious = join(dir, "disk.img");
    writeFileSync(precious, "a file that is not a preload image\n");
    const refused = await preload(["--factory-config", shortlistAB, ...fromGateway(), "--format", format, "--out", precious]);
    expect(refused.code, refused.stderr).toBe(50);
    expect(refused.stderr).toContain(`Cannot write the ${format} image to ${precious}: it exists and is no earlier preload ${format} image (nothing was changed)`);
    expect(readFileSync(precious, "utf8")).toBe("a file that is not a preload image\n");

    const image = join(dir, `rootfs.${format}`);
    for (const build of [1, 2]) {
      const r = await preload(["--factory-config", shortlistAB, ...fromGateway(), "--format", format, "--out", image]);
      expect(r.code, `build ${build}: ${r.stderr}`).toBe(0);
    }
    // An image of the other format is not an earlier image of this one.
    const other = await preload(["--factory-config", shortlistAB, ...fromGateway(), "--format", format === "tar" ? "ext4" : "tar", "--out", image]);
    expect(other.code, other.stderr).toBe(50);
    expect(leftovers(image)).toEqual([]);
  }, 120_000);

  test('ASSEMBLE_SYSTEM_IMAGE "0" exits 0 and writes nothing', async () => {
    const fc = await factoryConfig(
      `${preloadConfig(A)}  ref_options:\n    refs/heads/experimental:\n      params:\n        ASSEMBLE_SYSTEM_IMAGE: "0"\n`,
    );
    const out = join(work, "experimental");
    const r = await preload(["--factory-config", fc, "--ref", "refs/heads/experimental", "--server", gw.url, "--token", gw.adminToken, "--out", out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("refs/heads/experimental: no system image");
    expect(r.stdout).toContain('ASSEMBLE_SYSTEM_IMAGE: "0" → no system image');
    expect(existsSync(out)).toBe(false);
  }, 120_000);

  test("--explain prints the decision and its reasons, and writes nothing", async () => {
    const fc = await factoryConfig(
      `${preloadConfig(A)}  tagging:\n    refs/heads/devel:\n      - tag: devel\n  ref_options:\n    refs/heads/devel:\n      params:\n        APP_SHORTLIST: "${A},${B}"\n`,
    );
    const out = join(work, "explained");
    const r = await preload(["--factory-config", fc, ...fromGateway().slice(2), "--ref", "refs/heads/devel", "--out", out, "--explain"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.split("\n")).toEqual([
      `refs/heads/devel: preload ${A}, ${B} (tags: devel)`,
      `  - containers.tagging["refs/heads/devel"] → devel`,
      `  - containers.preloaded_images.enabled: true, shortlist: ${A}`,
      `  - containers.ref_options["refs/heads/devel"].params.APP_SHORTLIST overrides the list: ${A},${B}`,
      "",
    ]);
    const j = await preload(["--factory-config", fc, "--ref", "refs/heads/devel", "--explain", "--json"]);
    expect(j.json).toMatchObject({ assemble: true, apps: [A, B], tags: ["devel"], ref: "refs/heads/devel" });
    expect(existsSync(out)).toBe(false);
    await rm(out, { recursive: true, force: true });
  }, 120_000);
});

describe("targets from files, without --server", () => {
  test("the registry's CA comes from --token's pin or --ca; without either the error says what to give", async () => {
    const dir = await tempDir("preload-files-only-");
    for (const [f, to] of [["1.root.json", "root.json"], ["targets.json", "targets.json"]] as const) {
      const res = await gw.adminFetch(`/repo/${f}`);
      expect(res.status).toBe(200);
      writeFileSync(join(dir, to), await res.text());
    }
    writeFileSync(join(dir, "ca.pem"), gw.caPem);
    const files = ["--factory-config", shortlistAB, "--ref", "refs/heads/master", "--hwid", "amd64-linux", "--targets", join(dir, "targets.json"), "--root", join(dir, "root.json")];

    const none = await preload([...files, "--out", join(dir, "none")]);
    expect(none.code, none.stderr).toBe(30); // the registry's TLS identity cannot be checked
    expect(none.stderr).toContain("--ca FILE");
    expect(none.stderr).toContain("--token");
    expect(existsSync(join(dir, "none"))).toBe(false);

    const pinned = await preload([...files, "--token", gw.adminToken, "--out", join(dir, "pinned"), "--json"]);
    expect(pinned.code, pinned.stderr).toBe(0);
    expect(pinned.json.apps).toEqual([A, B]);

    const withCa = await preload([...files, "--registry-token", gw.adminToken, "--ca", join(dir, "ca.pem"), "--out", join(dir, "with-ca"), "--json"]);
    expect(withCa.code, withCa.stderr).toBe(0);
    expect(withCa.json.blobs).toBe(pinned.json.blobs);
  }, 120_000);
});
