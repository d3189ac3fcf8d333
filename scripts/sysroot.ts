#!/usr/bin/env bun
/**
 * The arm64 sysroot that lets x64 machines run the linux-arm64 binaries under
 * `qemu-aarch64-static -L <sysroot>`: Debian's libc6:arm64 unpacked into
 * .tmp/sysroot-arm64 (gitignored). Made once; later calls reuse it. Needs root the first time
 * (`dpkg --add-architecture arm64`, `apt-get update`) and Debian's mirror.
 *
 * Usage: bun scripts/sysroot.ts   (prints the sysroot path)
 *
 * @module
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";

export const SYSROOT = join(resolve(import.meta.dir, ".."), ".tmp", "sysroot-arm64");
const LOADER = "lib/ld-linux-aarch64.so.1";

export class SysrootError extends Error {
  override name = "SysrootError";
}

async function sh(cmd: string[], cwd?: string): Promise<string> {
  const sub = Bun.spawn({ cmd, cwd, stdout: "pipe", stderr: "pipe", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  const [out, err, code] = await Promise.all([new Response(sub.stdout).text(), new Response(sub.stderr).text(), sub.exited]);
  if (code !== 0) throw new SysrootError(`Cannot make the arm64 sysroot: ${cmd.join(" ")} exited with ${code}\n${err.slice(-2000)}`);
  return out;
}

/** True if the sysroot has the arm64 dynamic loader. */
export const sysrootReady = (dir = SYSROOT) => existsSync(join(dir, LOADER));

/**
 * Returns the sysroot path, creating it if needed.
 *
 * @example
 * ```ts
 * const root = await ensureSysroot();
 * Bun.spawnSync(["qemu-aarch64-static", "-L", root, "dist/fioup-linux-arm64", "--version"]);
 * ```
 * @throws {SysrootError} If dpkg/apt-get fail (no root, mirror unreachable).
 */
export async function ensureSysroot(log: (line: string) => void = () => {}): Promise<string> {
  if (sysrootReady()) return SYSROOT;
  const foreign = await sh(["dpkg", "--print-foreign-architectures"]);
  const aptLock = ["-o", "DPkg::Lock::Timeout=300"];
  if (!foreign.split("\n").includes("arm64")) {
    log("sysroot: dpkg --add-architecture arm64");
    await sh(["dpkg", "--add-architecture", "arm64"]);
  }
  mkdirSync(join(SYSROOT, ".."), { recursive: true });
  const work = mkdtempSync(`${SYSROOT}.tmp-`);
  try {
    try {
      await sh(["apt-get", ...aptLock, "download", "libc6:arm64"], work);
    } catch {
      log("sysroot: apt-get update (arm64 package lists)");
      await sh(["apt-get", ...aptLock, "update", "-qq"]);
      await sh(["apt-get", ...aptLock, "download", "libc6:arm64"], work);
    }
    const debs = readdirSync(work).filter((f) => f.endsWith("_arm64.deb"));
    if (!debs.length) throw new SysrootError("Cannot make the arm64 sysroot: apt-get download left no libc6 arm64 .deb");
    const root = join(work, "root");
    for (const deb of debs) {
      log(`sysroot: unpacking ${deb}`);
      await sh(["dpkg-deb", "-x", join(work, deb), root]);
    }
    // Debian puts the loader under usr/lib (merged /usr) with a lib symlink, or under lib.
    if (!sysrootReady(root) && existsSync(join(root, "usr", LOADER))) {
      await sh(["ln", "-s", "usr/lib", join(root, "lib")]);
    }
    if (!sysrootReady(root)) throw new SysrootError(`Cannot make the arm64 sysroot: ${LOADER} is not in libc6:arm64`);
    if (!sysrootReady()) {
      rmSync(SYSROOT, { recursive: true, force: true });
      try {
        renameSync(root, SYSROOT);
      } catch (err) {
        // Another process finished first: theirs is as good as ours.
        if (!sysrootReady()) throw err;
      }
    }
    return SYSROOT;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  if (process.argv.includes("--help") || process.argv.includes("-h")) {
    console.log("Usage: bun scripts/sysroot.ts\n\nMakes .tmp/sysroot-arm64 (libc6:arm64) for qemu-aarch64-static -L, and prints its path.");
    process.exit(0);
  }
  try {
    console.log(await ensureSysroot((l) => console.error(l)));
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  }
}
