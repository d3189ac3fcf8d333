/**
 * A second, private Docker daemon with its data root where a test wants it (e.g. on a small
 * loop-mounted disk, so a full disk hits image load and layer extraction). Unlike the shared
 * daemon (dockerd.ts) it belongs to one test process: no default bridge (`--bridge none`),
 * its own exec root, socket and containerd, compose networks from their own address pool so
 * they never clash with the shared daemon's, and it is stopped by PID.
 *
 * @module
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { DockerdHandle } from "./dockerd.ts";
import { Proc, run, tempDir } from "./tmp.ts";

let poolIndex = 0;

/**
 * Starts dockerd with `--data-root dataRoot` and waits for /_ping.
 *
 * @example
 * ```ts
 * const engine = await startPrivateDockerd(join(mnt, "docker"));
 * afterAll(() => engine.stop());
 * ```
 * @throws {ServiceStartError} If the daemon does not answer within 60 s.
 */
export async function startPrivateDockerd(dataRoot: string): Promise<DockerdHandle> {
  const dir = await tempDir("dockerd-private-");
  const socket = join(dir, "docker.sock");
  const config = join(dir, "daemon.json");
  writeFileSync(config, "{}\n");
  mkdirSync(dataRoot, { recursive: true });
  // One /16 per daemon of this process, away from the shared daemon's 10.200-10.201.
  const pool = `10.${210 + ((process.pid + poolIndex++) % 40)}.0.0/16`;
  const proc = Proc.start({
    name: "dockerd (private)",
    cmd: [
      "dockerd",
      "--config-file", config,
      "--data-root", dataRoot,
      "--exec-root", join(dir, "exec"),
      "--host", `unix://${socket}`,
      "--pidfile", join(dir, "dockerd.pid"),
      "--bridge", "none",
      "--iptables=false",
      "--ip6tables=false",
      "--ip-masq=false",
      "--default-address-pool", `base=${pool},size=24`,
      "--shutdown-timeout", "3",
      "--log-level", "warn",
    ],
    env: { HTTP_PROXY: "", HTTPS_PROXY: "", http_proxy: "", https_proxy: "", DOCKER_HOST: "" },
    logFile: join(dir, "dockerd.log"),
  });
  await proc.waitUntil(
    async () => {
      try {
        const res = await fetch("http://localhost/_ping", { unix: socket, signal: AbortSignal.timeout(2000) } as RequestInit);
        return res.ok;
      } catch {
        return false;
      }
    },
    `answer on ${socket}/_ping`,
    60_000,
  );
  const env = { DOCKER_HOST: `unix://${socket}` };
  return {
    socket,
    host: env.DOCKER_HOST,
    env,
    pid: proc.pid,
    async docker(...args: string[]): Promise<string> {
      return (await run(["docker", ...args], { env })).stdout;
    },
    async stop(): Promise<void> {
      await proc.stop(20_000);
    },
  };
}
