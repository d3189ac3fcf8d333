/**
 * What a build engineer on the factory floor gets wrong, against a real gateway: a base rootfs
 * that is a real one (device nodes, fifos, other owners, a /dev/fd link into /proc) is copied
 * whole, into every format; a base that is no rootfs (a tar packed from outside its folder) is
 * refused saying how to pack it; an --out under a file or on a read-only file system is refused
 * before the gateway is asked; a dir image goes into a mounted partition (no EBUSY), and one that
 * does not fit leaves it empty, and one that does not fit over an earlier image is refused before
 * the earlier image is touched (the room it frees counted); an earlier image a device has
 * registered in (its identity, its database) is refused; a --base without fioup and no --fioup is
 * bad usage; a work folder a killed preload left is removed by the next run; a full file system is said in words (exit 50) and leaves nothing;
 * Ctrl-C or SIGTERM removes the unfinished image and the tools preload ran; a hardware id, tag or
 * version no target has names what the targets do hold; a --fioup built for another architecture
 * than the image's, one that is no program (/etc/passwd) or another program (its --version does
 * not say fioup) is refused before anything is fetched.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chownSync, existsSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { GatewayHandle } from "../harness/gateway.ts";
import { run, tempDir } from "../harness/tmp.ts";
import { Publisher, httpdCompose, httpdImage, pushImage, startDockerRegistry, type DockerRegistryHandle } from "../fioup/_setup.ts";
import { asTestGateway, factoryConfig, preload, preloadConfig, startTestGateway } from "./_setup.ts";

const A = "pl3a";
let upstream: DockerRegistryHandle;
let gw: GatewayHandle;
let work: string;
let fc: string;
const mounts: string[] = [];

beforeAll(async () => {
  [upstream, gw] = await Promise.all([startDockerRegistry(), startTestGateway()]);
  const a = await pushImage(upstream, `test/${A}`, "v1", httpdImage(`${A} v1`));
  const pub = await Publisher.create(asTestGateway(gw), upstream, { [`${A}/docker-compose.yml`]: httpdCompose(a, 18090) });
  await pub.publish(1);
  work = await tempDir("preload-mistakes-");
  fc = await factoryConfig(preloadConfig());
}, 120_000);

afterAll(async () => {
  for (const m of mounts) await run(["umount", m], { allowFail: true });
  await Promise.all([gw?.stop(), upstream?.stop()]);
});

const fromGateway = () => ["--factory-config", fc, "--ref", "refs/heads/master", "--server", gw.url, "--token", gw.adminToken, "--hwid", "amd64-linux"];

/** What preload may leave beside --out: nothing (its work folder and partial file are removed, and a folder it made for --out when it fails). */
const leftovers = (out: string) => (existsSync(dirname(out)) ? readdirSync(dirname(out)).filter((f) => f.startsWith(".preload-") || f.endsWith(".partial")) : []);

/** A small but real root filesystem: a char device, a fifo, a file of another owner, a hard link, /dev/fd -> /proc/self/fd; and fioup unless told not to. */
async function realBase(o: { fioup?: boolean } = {}): Promise<string> {
  const base = await tempDir("preload-base-");
  for (const d of ["etc", "usr/bin", "dev", "home/user"]) mkdirSync(join(base, d), { recursive: true });
  writeFileSync(join(base, "etc/os-release"), "ID=test\n");
  if (o.fioup ?? true) writeFileSync(join(base, "usr/bin/fioup"), "#!/bin/sh\n", { mode: 0o755 });
  writeFileSync(join(base, "usr/bin/tool"), "#!/bin/sh\n");
  linkSync(join(base, "usr/bin/tool"), join(base, "usr/bin/tool2"));
  writeFileSync(join(base, "home/user/.profile"), "x\n");
  chownSync(join(base, "home/user/.profile"), 1234, 1234);
  symlinkSync("/proc/self/fd", join(base, "dev/fd"));
  await run(["mknod", "-m", "666", join(base, "dev/null"), "c", "1", "3"]);
  await run(["mkfifo", join(base, "dev/initctl")]);
  return base;
}

describe("--base", () => {
  test("a real rootfs directory (device nodes, fifos, owners, links into /proc) is copied whole into a dir image", async () => {
    const out = join(work, "based-dir");
    const r = await preload([...fromGateway(), "--base", await realBase(), "--out", out, "--json"]);
    expect(r.code, r.stderr).toBe(0);
    expect(lstatSync(join(out, "dev/null")).isCharacterDevice()).toBe(true);
    expect(lstatSync(join(out, "dev/initctl")).isFIFO()).toBe(true);
    expect(lstatSync(join(out, "dev/fd")).isSymbolicLink()).toBe(true);
    expect(lstatSync(join(out, "home/user/.profile")).uid).toBe(1234);
    expect(lstatSync(join(out, "usr/bin/tool")).ino).toBe(lstatSync(join(out, "usr/bin/tool2")).ino);
    expect(existsSync(join(out, "var/sota/preload/target.json"))).toBe(true);
    expect(leftovers(out)).toEqual([]);
  }, 120_000);

  test("and into an ext4 image, whose size is counted without following /dev/fd", async () => {
    const out = join(work, "based.ext4");
    const r = await preload([...fromGateway(), "--base", await realBase(), "--format", "ext4", "--out", out]);
    expect(r.code, r.stderr).toBe(0);
    const fsck = Bun.spawnSync(["e2fsck", "-fn", out], { stdout: "pipe", stderr: "pipe" });
    expect(fsck.exitCode, fsck.stdout.toString()).toBe(0);
    const stat = async (p: string) => (await run(["debugfs", "-R", `stat ${p}`, out])).stdout;
    expect(await stat("/dev/null")).toContain("Type: character special");
    expect(await stat("/dev/fd")).toContain("Type: symlink");
    expect(await stat("/home/user/.profile")).toMatch(/User:\s+1234/);
    expect(leftovers(out)).toEqual([]);
  }, 120_000);

  test("a tar packed from outside its folder is no rootfs: refused (exit 50) saying how to pack it, and no image", async () => {
    const base = await realBase();
    const tar = join(work, "outside.tar");
    await run(["tar", "-C", dirname(base), "-cf", tar, base.split("/").pop()!]);
    const out = join(work, "outside-img");
    const r = await preload([...fromGateway(), "--base", tar, "--out", out]);
    expect(r.code, r.stderr).toBe(50);
    expect(r.stderr).toContain(`Base rootfs ${tar} is not a root filesystem: no /etc nor /usr in it, it holds ${base.split("/").pop()} at its top`);
    expect(r.stderr).toContain(`pack it with: tar -C ${base.split("/").pop()} -cf BASE.tar .`);
    expect(existsSync(out)).toBe(false);
    expect(leftovers(out)).toEqual([]);
  }, 120_000);

  test("a file that is no tar (an ext4 image) is refused saying what --base takes", async () => {
    const img = join(work, "base.ext4");
    await run(["truncate", "-s", "8M", img]);
    await run(["mkfs.ext4", "-q", "-F", img]);
    const r = await preload([...fromGateway(), "--base", img, "--out", join(work, "ext4-base-img")]);
    expect(r.code, r.stderr).toBe(50);
    expect(r.stderr).toContain("--base takes a directory or a tar, plain or compressed; unpack an ext4 image first");
  }, 120_000);
});

describe("--out", () => {
  // The gateway is asked at a closed port: reaching it would exit 30, so exit 2 shows --out was checked first.
  const unreachable = () => ["--factory-config", fc, "--ref", "refs/heads/master", "--server", "https://127.0.0.1:1", "--token", gw.adminToken, "--hwid", "amd64-linux"];

  test("under a file: bad usage (exit 2) naming the file, before the gateway is asked", async () => {
    writeFileSync(join(work, "afile"), "x");
    const r = await preload([...unreachable(), "--format", "tar", "--out", join(work, "afile/sub/img.tar")]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(`Cannot write --out ${join(work, "afile/sub/img.tar")}: ${join(work, "afile")} is a file, not a folder`);
  }, 60_000);

  test("on a read-only file system: bad usage (exit 2) saying so, before the gateway is asked", async () => {
    const ro = join(work, "ro");
    mkdirSync(ro);
    await run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", ro]);
    mounts.push(ro);
    const r = await preload([...unreachable(), "--out", join(ro, "images/rootfs")]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(`the file system of ${ro} is read-only`);
  }, 60_000);

  test("in a file system that takes no files (/proc), as root: bad usage (exit 2) naming --out, before the gateway is asked", async () => {
    const r = await preload([...unreachable(), "--out", "/proc/preload-img"]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain("Cannot write --out /proc/preload-img: preload cannot make its work folder in /proc: its file system takes no new files (ENOENT)");
    expect(r.stderr).not.toContain("mkdtemp");
  }, 60_000);

  test("the folders above --out that a run made are gone again when it ends without an image", async () => {
    const r = await preload([...unreachable(), "--out", join(work, "made/for/img")]);
    expect(r.code, r.stderr).toBe(30);
    expect(existsSync(join(work, "made"))).toBe(false);
  }, 60_000);

  test.each([["dir", "600k", "the blobs to fetch needs"], ["tar", "1200k", "the blobs to fetch and the tar file need"]] as const)("%s: a full file system is exit 50 in words, at once, and nothing is left on it", async (format, size, detail) => {
    const full = join(work, `full-${format}`);
    mkdirSync(full);
    await run(["mount", "-t", "tmpfs", "-o", `size=${size}`, "tmpfs", full]);
    mounts.push(full);
    const out = join(full, "img");
    const t0 = Date.now();
    const r = await preload([...fromGateway(), "--format", format, "--out", out]);
    expect(r.code, r.stderr).toBe(50);
    // Not after a minute of retrying a download that cannot be written.
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(r.stderr).toContain(`No space left to write the image at ${out} (${detail} `);
    expect(r.stderr).toContain(`free some space in ${full} or give an --out on a larger file system`);
    expect(r.stderr).not.toContain("ENOSPC");
    expect(readdirSync(full)).toEqual([]);
  }, 120_000);
});

describe("--out a mounted partition (dir format)", () => {
  test("the image fills the mount point, again over the earlier image; one that does not fit leaves it empty (exit 50)", async () => {
    const mnt = join(work, "partition");
    mkdirSync(mnt);
    await run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt]);
    mounts.push(mnt);
    for (const build of [1, 2]) {
      const r = await preload([...fromGateway(), "--base", await realBase(), "--out", mnt]);
      expect(r.code, `build ${build}: ${r.stderr}`).toBe(0);
      expect(lstatSync(join(mnt, "dev/null")).isCharacterDevice()).toBe(true);
      expect(existsSync(join(mnt, "var/sota/preload/target.json"))).toBe(true);
    }
    expect(leftovers(mnt)).toEqual([]);

    const small = join(work, "small-partition");
    mkdirSync(small);
    await run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", small]);
    mounts.push(small);
    const r = await preload([...fromGateway(), "--out", small]);
    expect(r.code, r.stderr).toBe(50);
    expect(r.stderr).toContain(`No space left to write the image at ${small} (the image needs `);
    expect(r.stderr).toContain(`in the file system of ${small}, which has `);
    expect(readdirSync(small)).toEqual([]);
    expect(leftovers(small)).toEqual([]);
  }, 120_000);

  test("a new image that does not fit is refused before the earlier one is touched; one that fits in the room the earlier frees replaces it", async () => {
    const mnt = join(work, "replace-partition");
    mkdirSync(mnt);
    await run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mnt]);
    mounts.push(mnt);
    // A fioup that is no ELF binary (a wrapper script) is taken as it is: its size is what counts here.
    const fioup = async (mib: number) => {
      const f = join(await tempDir("preload-fioup-"), "fioup");
      writeFileSync(f, "#!/bin/sh\n" + "#".repeat(mib << 20));
      return f;
    };
    const first = await preload([...fromGateway(), "--fioup", await fioup(6), "--out", mnt]);
    expect(first.code, first.stderr).toBe(0);
    const earlier = readFileSync(join(mnt, "var/sota/preload/target.json"), "utf8");
    const fioupSize = lstatSync(join(mnt, "usr/bin/fioup")).size;

    // 20 MiB cannot fit in 16 MiB, even with the earlier image's 7 MiB freed: refused before any download.
    const r = await preload([...fromGateway(), "--fioup", await fioup(20), "--out", mnt]);
    expect(r.code, r.stderr).toBe(50);
    expect(r.stderr).toContain(`No space left to write the image at ${mnt} (the image needs `);
    expect(r.stderr).toMatch(/in the earlier image it replaces\)/);
    expect(r.stderr).toContain(`free some space in ${mnt} or give an --out on a larger file system (nothing was changed: the earlier image in ${mnt} is as it was)`);
    expect(r.stderr).not.toMatch(/^\[\d+\/\d+\] /m);
    expect(readFileSync(join(mnt, "var/sota/preload/target.json"), "utf8")).toBe(earlier);
    expect(lstatSync(join(mnt, "usr/bin/fioup")).size).toBe(fioupSize);
    expect(leftovers(mnt)).toEqual([]);

    // 9 MiB fits only in the room the earlier image frees: it replaces it.
    const again = await preload([...fromGateway(), "--fioup", await fioup(9), "--out", mnt]);
    expect(again.code, again.stderr).toBe(0);
    expect(lstatSync(join(mnt, "usr/bin/fioup")).size).toBeGreaterThan(9 << 20);
  }, 120_000);
});

describe("--out a device's root that has registered", () => {
  test.each(["sota.toml", "client.pem", "pkey.pem", "fioup.db"])("an earlier image holding var/sota/%s is refused (exit 50), unchanged", async (file) => {
    const out = join(work, `registered-${file}`);
    const first = await preload([...fromGateway(), "--base", await realBase(), "--out", out]);
    expect(first.code, first.stderr).toBe(0);
    writeFileSync(join(out, "var/sota", file), "the device's own\n");
    const r = await preload([...fromGateway(), "--out", out]);
    expect(r.code, r.stderr).toBe(50);
    expect(r.stderr).toContain(`Cannot write the image directory to ${out}: it is the root of a device that has registered or run (it holds /var/sota/${file}, which preload never writes)`);
    expect(readFileSync(join(out, "var/sota", file), "utf8")).toBe("the device's own\n");
    expect(existsSync(join(out, "etc/os-release"))).toBe(true);
    expect(leftovers(out)).toEqual([]);
  }, 120_000);
});

describe("no fioup in the image", () => {
  test("a --base without /usr/bin/fioup and no --fioup: bad usage (exit 2) saying to pass --fioup, and no image", async () => {
    const out = join(work, "no-fioup");
    const r = await preload([...fromGateway(), "--base", await realBase({ fioup: false }), "--out", out]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain("has no /usr/bin/fioup and no --fioup is given");
    expect(r.stderr).toContain("give --fioup FILE, the fioup built for linux/amd64");
    expect(r.stderr).not.toMatch(/^\[\d+\/\d+\] /m);
    expect(existsSync(out)).toBe(false);
    expect(leftovers(out)).toEqual([]);
  }, 120_000);

  test("no --base and no --fioup: built, with a warning that the early start needs fioup", async () => {
    const out = join(work, "no-fioup-no-base");
    const r = await preload([...fromGateway(), "--out", out]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("warning: the image holds no /usr/bin/fioup (no --fioup, no --base)");
  }, 120_000);
});

describe("--fioup", () => {
  // This machine's own binary (/bin/true) stands for a program built for it; a compiled one that answers --version as fioup does, for fioup.
  const host = process.arch === "arm64" ? "arm64" : "amd64";
  const other = host === "arm64" ? "amd64" : "arm64";
  const unreachable = (out: string) => ["--factory-config", fc, "--ref", "refs/heads/master", "--server", "https://127.0.0.1:1", "--token", gw.adminToken, "--out", join(work, out)];

  test("built for another architecture than the image's: bad usage (exit 2) naming both, before the gateway is asked", async () => {
    const r = await preload([...unreachable("wrong-fioup"), "--hwid", `${other}-linux`, "--fioup", "/bin/true"]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain(`--fioup /bin/true is built for ${host}, but the image is for linux/${other}`);
    expect(r.stderr).toContain(`(from --hwid ${other}-linux): give the fioup built for ${other}`);
    expect(existsSync(join(work, "wrong-fioup"))).toBe(false);
  }, 60_000);

  test("a file that is no program (/etc/passwd): bad usage (exit 2), before the gateway is asked", async () => {
    const r = await preload([...unreachable("passwd-fioup"), "--hwid", `${host}-linux`, "--fioup", "/etc/passwd"]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain("--fioup /etc/passwd is no fioup: it is neither an ELF binary nor a script starting with #!");
    expect(r.stderr).toContain(`give the fioup built for ${host}`);
    expect(existsSync(join(work, "passwd-fioup"))).toBe(false);
  }, 60_000);

  test("another program built for this machine (/bin/true, as dist/preload-linux-x64 would be): bad usage (exit 2) saying what its --version says", async () => {
    const r = await preload([...unreachable("true-fioup"), "--hwid", `${host}-linux`, "--fioup", "/bin/true"]);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/--fioup \/bin\/true is not fioup: asked its --version, it says "true \(GNU coreutils\) [^"]+", where fioup says "fioup VERSION"/);
    expect(existsSync(join(work, "true-fioup"))).toBe(false);
  }, 60_000);

  test("built for the image's architecture, answering --version as fioup does: installed as /usr/bin/fioup", async () => {
    const version = (await run([process.execPath, join(import.meta.dir, "../../fioup/main.ts"), "--version"])).stdout.trim();
    const dir = await tempDir("preload-fioup-bin-");
    writeFileSync(join(dir, "v.ts"), `console.log(${JSON.stringify(version)});\n`);
    await run([process.execPath, "build", "--compile", "--outfile", join(dir, "fioup"), join(dir, "v.ts")]);
    const out = join(work, "right-fioup");
    const r = await preload([...fromGateway(), "--fioup", join(dir, "fioup"), "--out", out]);
    expect(r.code, r.stderr).toBe(host === "amd64" ? 0 : 2);
    if (host === "amd64") expect(lstatSync(join(out, "usr/bin/fioup")).mode & 0o777).toBe(0o755);
    rmSync(out, { recursive: true, force: true });
  }, 120_000);
});

describe("a work folder left by a killed preload", () => {
  test("is removed by the next run into the same folder, which says so; one whose preload runs is left alone", async () => {
    const dir = await tempDir("preload-stale-");
    const dead = Bun.spawn(["true"]);
    await dead.exited;
    const stale = join(dir, ".preload-stale1");
    mkdirSync(join(stale, "rootfs/etc"), { recursive: true });
    writeFileSync(join(stale, "owner.lock"), `${dead.pid}\n`);
    const live = join(dir, ".preload-live1");
    mkdirSync(live);
    writeFileSync(join(live, "owner.lock"), `${process.pid}\n`);
    const r = await preload([...fromGateway(), "--out", join(dir, "img")]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`removed ${stale}: the unfinished work of an earlier preload (pid ${dead.pid}) that was killed`);
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(live)).toBe(true);
  }, 60_000);
});

describe("stopped half-way", () => {
  test.each([["SIGINT", 130], ["SIGTERM", 143]] as const)("%s removes the unfinished image and stops the tools preload ran", async (signal, code) => {
    // A base tar read from a fifo no one writes: tar waits there until preload is stopped.
    const dir = await tempDir("preload-stop-");
    const fifo = join(dir, `base-${signal}.tar`);
    await run(["mkfifo", fifo]);
    const out = join(dir, "img.ext4");
    const p = Bun.spawn([process.execPath, join(import.meta.dir, "../../preload/main.ts"), ...fromGateway(), "--base", fifo, "--format", "ext4", "--out", out], {
      stdout: "pipe",
      stderr: "pipe",
    });
    let err = "";
    const reader = p.stderr.getReader();
    while (!err.includes("layering onto base")) {
      const { value, done } = await reader.read();
      if (done) break;
      err += new TextDecoder().decode(value);
    }
    expect(err).toContain("layering onto base");
    await Bun.sleep(300);
    expect(readdirSync(dir).some((f) => f.startsWith(".preload-"))).toBe(true);
    p.kill(signal);
    for (let { value, done } = await reader.read(); !done; { value, done } = await reader.read()) err += new TextDecoder().decode(value);
    expect(await p.exited).toBe(code);
    expect(err).toContain(`preload: stopped by ${signal}; removed the unfinished image, ${out} is as it was`);
    expect(readdirSync(dir).sort()).toEqual([`base-${signal}.tar`]);
    const tar = await run(["pgrep", "-f", fifo], { allowFail: true });
    expect(tar.stdout.trim(), "a tar still reading the base").toBe("");
  }, 60_000);
});

describe("progress", () => {
  test("each blob says fetched on a cold cache (manifests read to resolve the apps included) and cached on a warm one", async () => {
    const cache = join(work, "progress-cache");
    const lines = (stderr: string) => stderr.split("\n").filter((l) => /^\[\d+\/\d+\] /.test(l));
    const cold = await preload([...fromGateway(), "--cache", cache, "--out", join(work, "progress-1")]);
    expect(cold.code, cold.stderr).toBe(0);
    expect(lines(cold.stderr).length).toBeGreaterThan(3);
    expect(lines(cold.stderr).filter((l) => !l.endsWith(" fetched"))).toEqual([]);
    const warm = await preload([...fromGateway(), "--cache", cache, "--out", join(work, "progress-2")]);
    expect(warm.code, warm.stderr).toBe(0);
    expect(lines(warm.stderr).filter((l) => !l.endsWith(" cached"))).toEqual([]);
  }, 60_000);
});

describe("no target", () => {
  test.each([
    ["the default hardware id", [], "No target for hardware id x86_64-linux and tag master in", "it holds targets for hardware ids amd64-linux: give one of them with --hwid (the default is x86_64-linux)"],
    ["a tag no target carries", ["--hwid", "amd64-linux", "--tag", "devel"], "tag devel", "its targets for amd64-linux carry tags master: give one of them with --tag"],
    ["a version that is not there", ["--hwid", "amd64-linux", "--target", "7"], "with version 7", "it holds versions 1 for amd64-linux and tag master: give one of them with --target"],
  ] as const)("%s: exit 20 naming what the targets hold", async (_what, extra, first, hint) => {
    const out = join(work, "no-target");
    const r = await preload(["--factory-config", fc, "--ref", "refs/heads/master", "--server", gw.url, "--token", gw.adminToken, ...extra, "--out", out]);
    expect(r.code, r.stderr).toBe(20);
    expect(r.stderr).toContain(first);
    expect(r.stderr).toContain(hint);
    expect(existsSync(out)).toBe(false);
  }, 60_000);
});
