/**
 * A second, private Docker daemon whose data root is a small ext4 filesystem on a loop
 * device: for tests of what happens when Docker's disk is nearly full. Unlike the shared
 * daemon of dockerd.ts it belongs to one test file: its own temp dir, socket, exec root,
 * no default bridge (`--bridge none`) and compose networks from 10.202.0.0/16, so the two
 * never meet. Needs root (mount, loop devices).
 *
 * @module
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { bridgesIn, removeBridges, type DockerdHandle } from "./dockerd.ts";
import { Proc, run, tempDir } from "./tmp.ts";

export interface LoopDockerdHandle extends DockerdHandle {
  /** The daemon's data root: the mount point of the small filesystem. */
  dataRoot: string;
}

async function ping(socket: string): Promise<boolean> {
  try {
    const res = await fetch("http://localhost/_ping", { unix: socket, signal: AbortSignal.timeout(2000) } as RequestInit);
    return res.ok;
  } catch {
    return false;
  }
}

/**
 * Starts dockerd on a fresh `sizeMiB` ext4 filesystem; `stop()` stops it by PID, unmounts and
 * deletes everything.
 *
 * @example
 * ```ts
 * const small = await startLoopDockerd({ sizeMiB: 128 });
 * await small.docker("info", "--format", "{{.DockerRootDir}}"); // small.dataRoot
 * afterAll(() => small.stop());
 * ```
 * @throws {ServiceStartError} If the daemon does not answer within 60 s.
 */
export async function startLoopDockerd(opts: { sizeMiB: number }): Promise<LoopDockerdHandle> {
  const dir = await tempDir("loopd-");
  const img = join(dir, "disk.img");
  const dataRoot = join(dir, "data");
  const exec = join(dir, "x");
  const socket = join(dir, "d.sock");
  await run(["truncate", "-s", `${opts.sizeMiB}M`, img]);
  await run(["mkfs.ext4", "-q", "-F", "-m", "0", img]);
  await run(["mkdir", "-p", dataRoot, exec]);
  await run(["mount", "-o", "loop", img, dataRoot]);
  // With no other such daemon running, bridges in 10.202.0.0/16 are ones a stopped daemon left
  // (a killed test, or an older harness): they would hold subnets of this daemon's small pool.
  const others = await run(["pgrep", "-f", "dockerd .*--data-root .*/loopd-"], { allowFail: true });
  if (!others.stdout.trim()) await removeBridges(await bridgesIn("10.202.0.0/16"));
  const config = join(dir, "daemon.json");
  writeFileSync(config, "{}\n");
  const proc = Proc.start({
    name: "dockerd (small disk)",
    cmd: [
      "dockerd", "--config-file", config, "--data-root", dataRoot, "--exec-root", exec, "--host", `unix://${socket}`,
      "--pidfile", join(dir, "d.pid"), "--bridge", "none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
      // A /20 of 10.202.0.0/16 per test process (16 networks each, by PID modulo 16), so two such
      // daemons that npm test's two workers run at once rarely give their networks the same subnets.
      "--default-address-pool", `base=10.202.${(process.pid % 16) * 16}.0/20,size=24`, "--shutdown-timeout", "3", "--log-level", "warn",
    ],
    env: { HTTP_PROXY: "", HTTPS_PROXY: "", http_proxy: "", https_proxy: "", DOCKER_HOST: "" },
    logFile: join(dir, "dockerd.log"),
  });
  const stopAll = async () => {
    // The bridges of its networks outlive a stopped dockerd (see bridgesIn in dockerd.ts): note them to delete after.
    const nets = await run(["docker", "network", "ls", "-q", "--filter", "driver=bridge"], { env: { DOCKER_HOST: `unix://${socket}` }, allowFail: true });
    const bridges = nets.code === 0 ? nets.stdout.split("\n").filter(Boolean).map((id) => `br-${id.slice(0, 12)}`) : [];
    await proc.stop();
    await removeBridges(bridges);
    // containerd shims outlive dockerd; they were started for us (their command line names our dir).
    const ps = await run(["pgrep", "-f", dir], { allowFail: true });
    for (const pid of ps.stdout.split("\n").map(Number).filter((p) => p > 0 && p !== process.pid)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    await run(["umount", "-l", dataRoot], { allowFail: true });
  };
  try {
    await proc.waitUntil(() => ping(socket), `answer on ${socket}`, 60_000);
  } catch (err) {
    await stopAll();
    throw err;
  }
  const env = { DOCKER_HOST: `unix://${socket}` };
  return {
    socket,
    host: env.DOCKER_HOST,
    env,
    pid: proc.pid,
    dataRoot,
    async docker(...args: string[]) {
      return (await run(["docker", ...args], { env })).stdout;
    },
    stop: stopAll,
  };
}
