/**
 * A private Docker daemon for tests, shared by every test process on the machine. Two daemons
 * fight over bridges and iptables, so there is ONE, at a fixed place (/tmp/ota-test-dockerd,
 * or $OTA_TEST_DOCKERD_DIR), guarded by a lock and reference-counted by the PIDs of the test
 * processes using it: the first user starts it (on a fresh data root), the last one stops it.
 * A process keeps its reference until it exits, though its test files dropped theirs: in `npm test`
 * (each of its `bun test` workers is one process over many files) the last `stop()` of a file empties the daemon of
 * containers, images, networks and volumes when no other process uses it, as a stop and a fresh
 * start would leave it, and the next file reuses it instead of waiting for that stop and start
 * (about 2 s each time); the exit hook stops it when the process ends, or the reaper once the
 * process is gone. Whoever stops it removes its containers and networks first, and a start
 * removes bridges an earlier daemon left in the pool (see bridgesIn).
 *
 * The daemon has its own bridge (`ota-test0`, 10.200.0.1/24), `--iptables=false` and no
 * registry mirrors: published ports on 127.0.0.1 work through docker-proxy, compose networks
 * come from 10.201.0.0/16, nothing is NATed to the outside, and an image that is not local
 * fails fast.
 *
 * @module
 */
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { BlockList } from "node:net";
import { join } from "node:path";
import { onExit, pidAlive, run, ServiceStartError, sleep, spawnDetached, stopPid, tailFile, waitFor } from "./tmp.ts";

export interface DockerdHandle {
  /** Path of the daemon's unix socket. */
  socket: string;
  /** `unix://<socket>`, for DOCKER_HOST. */
  host: string;
  /** `{DOCKER_HOST}`: spread into a child's env so `docker`/`docker-compose` talk to this daemon. */
  env: Record<string, string>;
  pid: number;
  /** Runs `docker ARGS...` against this daemon; returns stdout; throws with stderr on failure. */
  docker(...args: string[]): Promise<string>;
  /** Drops this reference; the daemon stops once no process on the machine that used it is alive. */
  stop(): Promise<void>;
}

const ROOT = process.env.OTA_TEST_DOCKERD_DIR ?? "/tmp/ota-test-dockerd";
const SOCKET = join(ROOT, "docker.sock");
const PIDFILE = join(ROOT, "dockerd.pid");
const LOG = join(ROOT, "dockerd.log");
const LOCK = join(ROOT, "lock");
const USERS = join(ROOT, "users");
const DATA = join(ROOT, "data");
const EXEC = join(ROOT, "exec");
/** One line per start and stop of the daemon, with who did it and why: npm test's summary prints it when a test failed. */
export const DOCKERD_HISTORY = join(ROOT, "history.log");
const BRIDGE = process.env.OTA_TEST_DOCKERD_BRIDGE ?? "ota-test0";
const BRIDGE_CIDR = process.env.OTA_TEST_DOCKERD_BIP ?? "10.200.0.1/24";
const ADDRESS_POOL = process.env.OTA_TEST_DOCKERD_POOL ?? "10.201.0.0/16";

export class DockerdLockError extends Error {
  override name = "DockerdLockError";
}

/** In-process reference count: many test files in one `bun test` process share one user entry. */
let localRefs = 0;
/** Whether this process's user entry exists (kept from the first start until the process exits). */
let registered = false;

async function ping(): Promise<boolean> {
  if (!existsSync(SOCKET)) return false;
  try {
    const res = await fetch("http://localhost/_ping", { unix: SOCKET, signal: AbortSignal.timeout(2000) } as RequestInit);
    return res.ok && (await res.text()) === "OK";
  } catch {
    return false;
  }
}

function daemonPid(): number {
  try {
    return Number.parseInt(readFileSync(PIDFILE, "utf8").trim(), 10);
  } catch {
    return 0;
  }
}

/** Lock = a directory created atomically, holding the owner's PID; a dead owner's lock is broken. */
function tryLockSync(): boolean {
  try {
    mkdirSync(LOCK);
    writeFileSync(join(LOCK, "owner"), String(process.pid));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    let owner = 0;
    try {
      owner = Number.parseInt(readFileSync(join(LOCK, "owner"), "utf8"), 10);
    } catch {
      // owner file not written yet, or lock just released
    }
    if (owner && !pidAlive(owner)) {
      rmSync(LOCK, { recursive: true, force: true });
    }
    return false;
  }
}

function unlockSync(): void {
  rmSync(LOCK, { recursive: true, force: true });
}

async function withLock<T>(fn: () => Promise<T>): Promise<T> {
  mkdirSync(ROOT, { recursive: true });
  const deadline = Date.now() + 180_000;
  let ownerless = 0;
  while (!tryLockSync()) {
    // A lock dir without an owner file for long is left by a crash between mkdir and write.
    if (!existsSync(join(LOCK, "owner")) && ++ownerless > 100) rmSync(LOCK, { recursive: true, force: true });
    if (Date.now() > deadline) throw new DockerdLockError(`Cannot lock ${LOCK}: held by another test process for 180 s`);
    await sleep(100);
  }
  try {
    return await fn();
  } finally {
    unlockSync();
  }
}

function liveUsers(): number[] {
  mkdirSync(USERS, { recursive: true });
  const live: number[] = [];
  for (const name of readdirSync(USERS)) {
    const pid = Number.parseInt(name, 10);
    if (pidAlive(pid)) live.push(pid);
    else rmSync(join(USERS, name), { force: true });
  }
  return live;
}

/** PIDs of processes (containerd shims, a stale dockerd/containerd) whose command line names our root. */
function leftoverPids(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    const pid = Number.parseInt(entry, 10);
    if (!pid || pid === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (cmdline.includes(`${ROOT}/`)) pids.push(pid);
    } catch {
      // process gone
    }
  }
  return pids;
}

/** Leaves ROOT with no daemon, no shims, no mounts and empty data/exec roots. */
async function wipe(): Promise<void> {
  for (const pid of leftoverPids()) await stopPid(pid, 3000);
  const mountinfo = readFileSync("/proc/self/mountinfo", "utf8").split("\n");
  const mounts = mountinfo
    .map((l) => l.split(" ")[4] ?? "")
    .filter((m) => m.startsWith(`${ROOT}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await run(["umount", "-l", m], { allowFail: true });
  rmSync(DATA, { recursive: true, force: true });
  rmSync(EXEC, { recursive: true, force: true });
  rmSync(SOCKET, { force: true });
  rmSync(PIDFILE, { force: true });
  const stale = await bridgesIn(ADDRESS_POOL);
  if (stale.length) history(`removes ${stale.length} bridges an earlier dockerd left in ${ADDRESS_POOL}`);
  await removeBridges(stale);
}

/**
 * The Linux bridges (`br-<network id>`) whose IPv4 address lies in `cidr`. A dockerd that stops
 * leaves the bridges of its networks behind, and its routes with them; when its data root is
 * wiped, the next daemon knows nothing of them and avoids their subnets as taken by the host.
 * Left to pile up over runs they filled the test pool's 256 subnets ("could not find an
 * available, non-overlapping IPv4 address pool"): a CI run failed 11 tests that way.
 */
export async function bridgesIn(cidr: string): Promise<string[]> {
  const [base = "", bits = "32"] = cidr.split("/");
  const pool = new BlockList();
  pool.addSubnet(base, Number(bits), "ipv4");
  const res = await run(["ip", "-j", "-4", "addr", "show", "type", "bridge"], { allowFail: true });
  if (res.code !== 0) return [];
  const links = JSON.parse(res.stdout || "[]") as { ifname?: string; addr_info?: { local: string }[] }[];
  return links.filter((l) => l.ifname?.startsWith("br-") && l.addr_info?.some((a) => pool.check(a.local, "ipv4"))).map((l) => l.ifname!);
}

/** Deletes network links by name (one already gone is fine). */
export async function removeBridges(names: string[]): Promise<void> {
  for (const name of names) await run(["ip", "link", "delete", name], { allowFail: true });
}

/**
 * Safety net for test processes that die without calling stop() (bun test runs no exit
 * handlers): a detached loop that stops the daemon by PID once no registered user is alive
 * for ~6 s and nobody holds the lock. It takes the lock to stop it, so no test process starts
 * to use a daemon it is emptying; it removes the containers and networks first, as the
 * daemon then deletes their bridges (a stopped daemon leaves them: see bridgesIn).
 */
const REAPER_SCRIPT = `
root=$1; idle=0
export DOCKER_HOST="unix://$root/docker.sock"
alive() { [ -r /proc/$1/stat ] && [ "$(cut -d' ' -f3 /proc/$1/stat)" != Z ]; }
users() {
  n=0
  for f in "$root"/users/*; do
    [ -e "$f" ] || continue
    if alive "\${f##*/}"; then n=1; else rm -f "$f"; fi
  done
  [ $n = 1 ]
}
sleep 5
while :; do
  pid=$(cat "$root/dockerd.pid" 2>/dev/null)
  [ -n "$pid" ] && alive "$pid" || exit 0
  busy=0
  users && busy=1
  owner=$(cat "$root/lock/owner" 2>/dev/null)
  [ -n "$owner" ] && alive "$owner" && busy=1
  if [ $busy = 0 ]; then idle=$((idle+1)); else idle=0; fi
  if [ $idle -ge 3 ] && mkdir "$root/lock" 2>/dev/null; then
    echo $$ > "$root/lock/owner"
    if users; then
      idle=0
    else
      echo "$(date -u +%Y-%m-%dT%H:%M:%S.000Z) reaper: no live user for 6 s: empties and stops dockerd $pid" >> "$root/history.log"
      ids=$(timeout 20 docker ps -aq 2>/dev/null)
      [ -n "$ids" ] && timeout 60 docker rm -f -v $ids >/dev/null 2>&1
      timeout 20 docker network prune -f >/dev/null 2>&1
      kill -TERM "$pid"
      i=0; while alive "$pid" && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done
      rm -rf "$root/lock"
      exit 0
    fi
    rm -rf "$root/lock"
  fi
  sleep 2
done
`;

async function ensureBridge(): Promise<void> {
  // A stale bridge elsewhere with our subnet (e.g. a docker0 left by another daemon) would
  // steal the route to the containers: refuse with a clear message instead of hanging.
  const routes = (await run(["ip", "-4", "route", "show"])).stdout.split("\n");
  const net = BRIDGE_CIDR.replace(/\.\d+\//, ".0/");
  const clash = routes.find((r) => r.startsWith(`${net} `) && !r.includes(`dev ${BRIDGE} `));
  if (clash) {
    throw new ServiceStartError(
      `Cannot start dockerd: another interface routes ${net} (${clash.trim()}); delete it or set OTA_TEST_DOCKERD_BIP`,
    );
  }
  const exists = await run(["ip", "link", "show", BRIDGE], { allowFail: true });
  if (exists.code !== 0) {
    await run(["ip", "link", "add", BRIDGE, "type", "bridge"]);
    await run(["ip", "addr", "add", BRIDGE_CIDR, "dev", BRIDGE]);
  }
  await run(["ip", "link", "set", BRIDGE, "up"]);
}

/**
 * Starts the daemon on a wiped root; once more if the start failed with no dockerd of ours
 * left running. One CI run on a fresh machine failed in the first test file that starts the
 * daemon, 59 ms into its beforeAll (too soon for a daemon that started), and kept no log of
 * why: the first failure and its log tail go to stderr, so a next one shows the cause, and
 * the second try's error is thrown.
 */
async function startDaemon(): Promise<number> {
  try {
    return await startDaemonOnce();
  } catch (err) {
    if (ourDockerdRunning()) throw err; // it runs but does not answer: a second one would not help
    console.error(`test dockerd: ${(err as Error).message}\ntest dockerd: starting it once more`);
    await stopDaemon(`its first start failed: ${(err as Error).message.split("\n")[0]}`);
    return await startDaemonOnce();
  }
}

async function startDaemonOnce(): Promise<number> {
  await wipe();
  await ensureBridge();
  mkdirSync(DATA, { recursive: true });
  mkdirSync(EXEC, { recursive: true });
  // An empty config file so /etc/docker/daemon.json (mirrors, proxies) never applies.
  const config = join(ROOT, "daemon.json");
  writeFileSync(config, "{}\n");
  writeFileSync(LOG, "");
  await spawnDetached({
    cmd: [
      "dockerd",
      "--config-file", config,
      "--data-root", DATA,
      "--exec-root", EXEC,
      "--host", `unix://${SOCKET}`,
      "--pidfile", PIDFILE,
      "--bridge", BRIDGE,
      "--iptables=false",
      "--ip6tables=false",
      "--ip-masq=false",
      "--default-address-pool", `base=${ADDRESS_POOL},size=24`,
      "--shutdown-timeout", "3",
      "--log-level", "warn",
    ],
    env: { HTTP_PROXY: "", HTTPS_PROXY: "", http_proxy: "", https_proxy: "", DOCKER_HOST: "" },
    logFile: LOG,
  });
  await spawnDetached({ cmd: ["sh", "-c", REAPER_SCRIPT, "ota-dockerd-reaper", ROOT], logFile: join(ROOT, "reaper.log") });
  await waitFor({
    service: "dockerd",
    what: `answer on ${SOCKET}/_ping`,
    ready: ping,
    logFile: LOG,
    // Alive while a dockerd of ours runs, found by its command line: its pidfile may appear late on
    // a loaded machine (a fixed grace for it once failed a CI run with an empty log).
    alive: seenRecently(ourDockerdRunning, 3000),
    timeoutMs: 60_000,
  });
  history(`started dockerd ${daemonPid()}`);
  return daemonPid();
}

/**
 * `seen`, forgiving `graceMs` without it: true while it held at some look within the last
 * `graceMs` (counted from now at first). The first look at a dockerd comes right after the fork,
 * while `setsid` execs it, and during an exec the kernel shows an empty /proc/PID/cmdline (the
 * new image's arguments are set late; seen for a live dockerd in 30 of 30 starts polled in a
 * loop): one look then finds no dockerd of ours. That is the likely cause of the "exited before
 * answer on _ping" with an empty log that CI runs and this machine saw on a first start (the
 * retry in startDaemon then passed). A dockerd that does exit is reported `graceMs` later, with
 * its log.
 */
function seenRecently(seen: () => boolean, graceMs: number): () => boolean {
  let last = performance.now();
  return () => {
    if (seen()) last = performance.now();
    return performance.now() - last < graceMs;
  };
}

/** Whether a dockerd started with our pidfile runs (setsid -f leaves us without its PID). */
function ourDockerdRunning(): boolean {
  for (const entry of readdirSync("/proc")) {
    const pid = Number.parseInt(entry, 10);
    if (!pid) continue;
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      // (before its exec the child of `setsid -f` still shows setsid's command line, dockerd's after it)
      if (argv.includes(PIDFILE) && argv.some((a) => a.endsWith("dockerd")) && pidAlive(pid)) return true;
    } catch {
      // process gone
    }
  }
  return false;
}

/** Appends to DOCKERD_HISTORY (best effort: a diagnostic, never a reason to fail). */
function history(what: string): void {
  try {
    mkdirSync(ROOT, { recursive: true });
    appendFileSync(DOCKERD_HISTORY, `${new Date().toISOString()} test process ${process.pid}: ${what}\n`);
  } catch {
    // diagnostic only
  }
}

async function stopDaemon(why: string): Promise<void> {
  const pid = daemonPid();
  history(`stops dockerd ${pid || "(no pid)"}: ${why}`);
  if (pid && pidAlive(pid)) await stopPid(pid, 20_000);
  // containerd shims outlive a killed dockerd; they were started for us, so stop them too.
  for (const p of leftoverPids()) await stopPid(p, 3000);
}

/** Brings the running daemon back to the state of a fresh one (no containers, images, networks, volumes), else stops it. */
async function emptyOrStop(): Promise<void> {
  const env = { DOCKER_HOST: `unix://${SOCKET}` };
  try {
    const ids = (await run(["docker", "ps", "-aq"], { env })).stdout.trim().split("\n").filter(Boolean);
    if (ids.length) await run(["docker", "rm", "-f", "-v", ...ids], { env });
    await run(["docker", "system", "prune", "-af", "--volumes"], { env });
  } catch (err) {
    console.error(`test dockerd: cannot empty it for the next test file, stopping it: ${(err as Error).message}`);
    await stopDaemon(`cannot empty it: ${(err as Error).message.split("\n")[0]}`);
  }
}

function registerUserSync(): void {
  mkdirSync(USERS, { recursive: true });
  writeFileSync(join(USERS, String(process.pid)), "");
  registered = true;
}

let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  onExit(() => {
    if (!registered) return;
    registered = false;
    localRefs = 0;
    rmSync(join(USERS, String(process.pid)), { force: true });
    // Best effort, synchronous: if nobody else uses the daemon, ask it to stop.
    const deadline = Date.now() + 2000;
    while (!tryLockSync()) {
      if (Date.now() > deadline) return;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    }
    try {
      if (liveUsers().length === 0) {
        const pid = daemonPid();
        if (pid && pidAlive(pid)) {
          history(`exits as its last user: empties and stops dockerd ${pid}`);
          // Its networks first, as the reaper does: the daemon then deletes their bridges.
          const env = { ...process.env, DOCKER_HOST: `unix://${SOCKET}` };
          const ids = Bun.spawnSync(["docker", "ps", "-aq"], { env, timeout: 10_000 }).stdout.toString().split("\n").filter(Boolean);
          if (ids.length) Bun.spawnSync(["docker", "rm", "-f", "-v", ...ids], { env, timeout: 30_000 });
          Bun.spawnSync(["docker", "network", "prune", "-f"], { env, timeout: 10_000 });
          process.kill(pid, "SIGTERM");
        }
      }
    } finally {
      unlockSync();
    }
  });
}

/**
 * Returns the machine's shared private dockerd, starting it if nobody runs it. Call `stop()`
 * in afterAll.
 *
 * @example
 * ```ts
 * const dockerd = await startDockerd();
 * await dockerd.docker("load", "-i", await busyboxImageTar({ tag: "t/app:1" }));
 * Bun.spawn(["docker-compose", "up", "-d"], { env: { ...process.env, ...dockerd.env } });
 * afterAll(() => dockerd.stop());
 * ```
 * @throws {ServiceStartError} If the daemon does not answer /_ping within 60 s (message has its log tail).
 */
export async function startDockerd(): Promise<DockerdHandle> {
  installExitHook();
  const pid = await withLock(async () => {
    registerUserSync();
    localRefs++;
    try {
      if (await ping()) return daemonPid();
      // A daemon still starting (another process died mid-start) or hung: give it a moment, then
      // replace it. A longer moment while another test process uses it (npm test's other worker):
      // a busy daemon answers late, and replacing it would fail that process's tests.
      const old = daemonPid();
      if (old && pidAlive(old)) {
        const waitS = liveUsers().some((p) => p !== process.pid) ? 60 : 15;
        const deadline = Date.now() + waitS * 1000;
        while (Date.now() < deadline) {
          if (await ping()) return old;
          await sleep(200);
        }
        await stopDaemon(`it runs but has not answered /_ping for ${waitS} s`);
      }
      return await startDaemon();
    } catch (err) {
      localRefs--;
      if (localRefs === 0) {
        rmSync(join(USERS, String(process.pid)), { force: true });
        registered = false;
      }
      throw err;
    }
  });
  const env = { DOCKER_HOST: `unix://${SOCKET}` };
  let stopped = false;
  return {
    socket: SOCKET,
    host: env.DOCKER_HOST,
    env,
    pid,
    async docker(...args: string[]): Promise<string> {
      return (await run(["docker", ...args], { env })).stdout;
    },
    async stop(): Promise<void> {
      if (stopped) return;
      stopped = true;
      // The user entry stays until this process exits (see the module comment): the next test file reuses the daemon.
      await withLock(async () => {
        localRefs--;
        if (localRefs === 0 && liveUsers().every((p) => p === process.pid)) {
          history("empties dockerd for the next test file (its only user)");
          await emptyOrStop();
        }
      });
    },
  };
}

/** The shared daemon's log (for debugging a failing test). */
export function dockerdLogTail(bytes = 4000): string {
  return tailFile(LOG, bytes);
}

export { ServiceStartError };
