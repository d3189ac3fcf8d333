/**
 * A preloaded image booted under systemd: the cached Debian root file system (minbase, systemd,
 * docker-compose; mmdebstrap, cached under /var/tmp), a tree to boot that is an overlay on it (or a
 * copy where overlayfs cannot be mounted), `systemd-nspawn -b` with the harness dockerd's socket
 * at /run/docker.sock, and commands run inside with nsenter. For boot tests that must see what
 * systemd itself does with the image's units (test/reliability/early-start-systemd.test.ts,
 * test/preload/registered-systemd.test.ts).
 *
 * @module
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { run, sleep, stopPid } from "./tmp.ts";

const CACHE = process.env.OTA_TEST_ROOTFS_CACHE ?? "/var/tmp/ota-test-cache";
const ROOTFS = join(CACHE, "bookworm-systemd-compose");

/** The cached root file system: minbase + systemd + dbus + docker-compose, built once. */
export async function cachedRootfs(): Promise<string> {
  if (existsSync(join(ROOTFS, "usr/lib/systemd/systemd"))) return ROOTFS;
  mkdirSync(CACHE, { recursive: true });
  const tmp = `${ROOTFS}.${process.pid}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  await run(["mmdebstrap", "--variant=minbase", "--include=systemd,systemd-sysv,dbus,docker-compose", "bookworm", tmp, "http://deb.debian.org/debian"]);
  renameSync(tmp, ROOTFS);
  return ROOTFS;
}

/** A booted (or bootable) tree under a work dir, and how to take it down again. */
export class BootedTree {
  private overlay?: string;
  private nspawn?: { pid: number };
  /** The container's init, once it runs. */
  leader?: number;

  private constructor(
    readonly work: string,
    readonly root: string,
  ) {}

  /** The tree to boot under `work`: an overlay on `lower` (nothing copied), or a copy. */
  static async over(lower: string, work: string): Promise<BootedTree> {
    const [upper, scratch, tree] = ["upper", "overlay-work", "root"].map((d) => join(work, d)) as [string, string, string];
    for (const d of [upper, scratch, tree]) mkdirSync(d);
    const t = new BootedTree(work, tree);
    const m = await run(["mount", "-t", "overlay", "overlay", "-o", `lowerdir=${lower},upperdir=${upper},workdir=${scratch}`, tree], { allowFail: true });
    if (m.code === 0) t.overlay = tree;
    else await run(["cp", "-a", "--reflink=auto", `${lower}/.`, tree]);
    return t;
  }

  /** Boots the tree with `dockerSock` at /run/docker.sock and waits (up to `ms`) for its init. */
  async boot(dockerSock: string, ms = 60_000): Promise<number> {
    const proc = Bun.spawn(["systemd-nspawn", "--register=no", "--keep-unit", "--console=passive", "-D", this.root, `--bind=${dockerSock}:/run/docker.sock`, "-b"], {
      stdout: "pipe",
      stderr: "pipe",
    });
    this.nspawn = proc;
    void new Response(proc.stdout).text();
    void new Response(proc.stderr).text();
    const deadline = Date.now() + ms;
    while (!this.leader && Date.now() < deadline) {
      await sleep(300);
      this.leader = leaderPid(proc.pid);
    }
    if (!this.leader) throw new Error("the container never started");
    return this.leader;
  }

  /** Runs `cmd` inside the booted tree (all its namespaces), with a clean environment. */
  inside(...cmd: string[]) {
    return run(["nsenter", "-t", String(this.leader), "-a", "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", ...cmd], { allowFail: true });
  }

  /** Waits until `systemctl is-active unit` is one of `states`; returns the last state read. */
  async waitActive(unit: string, states: string[], ms: number): Promise<string> {
    let active = "";
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      active = (await this.inside("systemctl", "is-active", unit)).stdout.trim();
      if (states.includes(active)) break;
      await sleep(500);
    }
    return active;
  }

  /**
   * Stops the container, unmounts the overlay (once more after a second if it is still busy, then
   * lazily), then removes the work dir: never while the overlay is mounted, as removing through it
   * would only whiteout files and leave the mount behind.
   */
  async remove(): Promise<void> {
    try {
      if (this.nspawn) await stopPid(this.nspawn.pid, 20_000);
    } finally {
      if (this.overlay) {
        let r = await run(["umount", this.overlay], { allowFail: true });
        if (r.code !== 0) {
          await Bun.sleep(1000);
          r = await run(["umount", this.overlay], { allowFail: true });
        }
        if (r.code !== 0) {
          console.error(`boot test: ${this.overlay} still busy, unmounted lazily: ${r.stderr.trim()}`);
          await run(["umount", "-l", this.overlay], { allowFail: true });
        }
        this.overlay = undefined;
      }
      rmSync(this.work, { recursive: true, force: true });
    }
  }
}

/** The container's init: the child of systemd-nspawn. */
function leaderPid(nspawnPid: number): number | undefined {
  for (const t of readdirSync(`/proc/${nspawnPid}/task`)) {
    const kids = readFileSync(`/proc/${nspawnPid}/task/${t}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
    if (kids.length) return Number(kids[0]);
  }
  return undefined;
}
