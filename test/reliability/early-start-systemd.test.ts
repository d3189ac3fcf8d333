/**
 * The early-start service started by systemd, not only by hand: a minimal Debian root file
 * system with systemd and docker-compose (mmdebstrap, cached under /var/tmp), `preload`
 * writes the image into it (store, preloaded target, the unit and its script), the compiled
 * fioup goes to /usr/bin/fioup, and the tree boots in `systemd-nspawn -b`. systemd then runs
 * compose-apps-early-start.service on its own: the test only inspects it (nsenter …
 * systemctl show) and checks the preloaded apps answer while the other one does not.
 *
 * The container engine is the harness's private dockerd: its socket is bound to
 * /run/docker.sock inside, and docker.service inside is a one-shot stand-in that only says
 * "the engine is up" (a second dockerd inside nspawn would need its own cgroups and bridge).
 * The booted tree is an overlay on the cached root file system (writes go to a temp dir, the
 * cache stays as built), a copy of it where overlayfs cannot be mounted.
 * Slow (root file system, boot): this runs in the reliability suite.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { binaryPath, buildOne, isFresh } from "../../scripts/build.ts";
import { Publisher, asTestGateway, freePort, httpGet, httpdCompose, httpdImage, pushImage, startDockerRegistry, startDockerd, type DockerRegistryHandle, type DockerdHandle } from "../fioup/_setup.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { run, sleep, stopPid, tempDir } from "../harness/tmp.ts";
import { factoryConfig, preload, preloadConfig } from "../preload/_setup.ts";
import { Tally } from "./_tally.ts";

const tally = new Tally("early-start");
const CACHE = process.env.OTA_TEST_ROOTFS_CACHE ?? "/var/tmp/ota-test-cache";
const ROOTFS = join(CACHE, "bookworm-systemd-compose");
const UNIT = "compose-apps-early-start.service";
const [A, B, C] = [`esa${process.pid}`, `esb${process.pid}`, `esc${process.pid}`];
const port: Record<string, number> = {};

let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gw: GatewayHandle;
let work: string | undefined;
let root: string;
/** The overlay mounted at `root`, if the tree is one. */
let overlay: string | undefined;
let nspawn: { pid: number } | undefined;

/** The cached root file system: minbase + systemd + dbus + docker-compose, built once. */
async function rootfs(): Promise<string> {
  if (existsSync(join(ROOTFS, "usr/lib/systemd/systemd"))) return ROOTFS;
  mkdirSync(CACHE, { recursive: true });
  const tmp = `${ROOTFS}.${process.pid}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  await run(["mmdebstrap", "--variant=minbase", "--include=systemd,systemd-sysv,dbus,docker-compose", "bookworm", tmp, "http://deb.debian.org/debian"]);
  renameSync(tmp, ROOTFS);
  return ROOTFS;
}

/** The tree to boot under `dir`: an overlay on `lower` (nothing copied), or a copy where overlayfs cannot be mounted. */
async function bootTree(lower: string, dir: string): Promise<string> {
  const [upper, scratch, tree] = ["upper", "overlay-work", "root"].map((d) => join(dir, d)) as [string, string, string];
  for (const d of [upper, scratch, tree]) mkdirSync(d);
  const m = await run(["mount", "-t", "overlay", "overlay", "-o", `lowerdir=${lower},upperdir=${upper},workdir=${scratch}`, tree], { allowFail: true });
  if (m.code === 0) overlay = tree;
  else await run(["cp", "-a", "--reflink=auto", `${lower}/.`, tree]);
  return tree;
}

/** The container's init: the child of systemd-nspawn. */
function leaderPid(nspawnPid: number): number | undefined {
  for (const t of readdirSync(`/proc/${nspawnPid}/task`)) {
    const kids = readFileSync(`/proc/${nspawnPid}/task/${t}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
    if (kids.length) return Number(kids[0]);
  }
  return undefined;
}

const inside = (pid: number, ...cmd: string[]) => run(["nsenter", "-t", String(pid), "-a", ...cmd], { allowFail: true });

beforeAll(async () => {
  const [fs] = await Promise.all([
    rootfs(),
    (async () => (isFresh("fioup", "x64") ? undefined : await buildOne("fioup", "x64")))(),
  ]);
  [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startGateway({ args: ["--polling-seconds", "1"] })]);
  for (const n of [A, B, C]) port[n] = await freePort();
  const refs = await Promise.all([A, B, C].map((n) => pushImage(upstream, `test/${n}`, "v1", httpdImage(`${n} v1`))));
  const pub = await Publisher.create(asTestGateway(gw), upstream, Object.fromEntries([A, B, C].map((n, i) => [`${n}/docker-compose.yml`, httpdCompose(refs[i]!, port[n]!)])));
  await pub.publish(1);

  work = await tempDir("early-start-root-");
  root = await bootTree(fs, work);
  const image = join(work, "image");
  const fc = await factoryConfig(preloadConfig(`${A},${B}`));
  const r = await preload(["--factory-config", fc, "--ref", "refs/heads/master", "--server", gw.url, "--token", gw.adminToken, "--hwid", "amd64-linux", "--out", image, "--format", "dir", "--json"]);
  if (r.code !== 0) throw new Error(`preload failed: ${r.stderr}`);
  // What preload writes (store, target, unit, script) laid over the OS tree, as an image build would.
  await run(["cp", "-a", `${image}/.`, root]);
  copyFileSync(binaryPath("fioup", "x64"), join(root, "usr/bin/fioup"));
  chmodSync(join(root, "usr/bin/fioup"), 0o755);
  writeFileSync(
    join(root, "etc/systemd/system/docker.service"),
    "[Unit]\nDescription=Container engine (the test harness's dockerd; its socket is bound to /run/docker.sock)\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n",
  );
  await gw.stop(); // first boot is offline: nothing to fetch from
}, 900_000);

afterAll(async () => {
  tally.print();
  try {
    if (nspawn) await stopPid(nspawn.pid, 20_000);
  } finally {
    await unmountTree();
  }
  for (const p of [A, B, C]) {
    const ids = (await dockerd?.docker("ps", "-aq", "--filter", `label=com.docker.compose.project=${p}`).catch(() => ""))?.trim();
    if (ids) await dockerd.docker("rm", "-f", ...ids.split("\n")).catch(() => {});
  }
  await upstream?.stop();
  await dockerd?.stop();
});

/**
 * Unmounts the overlay (once more after a second if it is still busy, then lazily), then removes
 * the work dir: never while the overlay is mounted, as removing through it would only whiteout
 * files and leave the mount behind.
 */
async function unmountTree(): Promise<void> {
  if (overlay) {
    let r = await run(["umount", overlay], { allowFail: true });
    if (r.code !== 0) {
      await Bun.sleep(1000);
      r = await run(["umount", overlay], { allowFail: true });
    }
    if (r.code !== 0) {
      console.error(`early-start test: ${overlay} still busy, unmounted lazily: ${r.stderr.trim()}`);
      await run(["umount", "-l", overlay], { allowFail: true });
    }
    overlay = undefined;
  }
  if (work) rmSync(work, { recursive: true, force: true });
}

describe("early start under systemd", () => {
  test("booted in systemd-nspawn, systemd runs compose-apps-early-start and only the preloaded apps come up", async () => {
    const sock = dockerd.env.DOCKER_HOST!.replace(/^unix:\/\//, "");
    const proc = Bun.spawn(["systemd-nspawn", "--register=no", "--keep-unit", "--console=passive", "-D", root, `--bind=${sock}:/run/docker.sock`, "-b"], {
      stdout: "pipe",
      stderr: "pipe",
    });
    nspawn = proc;
    void new Response(proc.stdout).text();
    void new Response(proc.stderr).text();
    let leader: number | undefined;
    let active = "";
    const deadline = Date.now() + 180_000;
    while (Date.now() < deadline) {
      await sleep(500);
      leader ??= leaderPid(proc.pid);
      if (!leader) continue;
      active = (await inside(leader, "systemctl", "is-active", UNIT)).stdout.trim();
      if (active === "active" || active === "failed") break;
    }
    const show = leader ? (await inside(leader, "systemctl", "show", "-p", "Result,ExecMainStatus,ActiveState,ConditionResult", UNIT)).stdout : "";
    const journal = leader ? (await inside(leader, "journalctl", "-u", UNIT, "--no-pager", "-o", "cat")).stdout : "";
    const answers = Object.fromEntries(await Promise.all([A, B, C].map(async (n) => [n, await httpGet(port[n]!)])));
    const ok = active === "active" && show.includes("Result=success") && answers[A] === `${A} v1` && answers[B] === `${B} v1` && answers[C] === undefined;
    tally.record(`systemd starts ${UNIT} on first boot`, ok ? "survived" : "failed", `${active}; ${show.replace(/\n/g, " ")}; apps ${JSON.stringify(answers)}`);
    expect(leader, "the container never started").toBeDefined();
    expect(active, journal.slice(-2000)).toBe("active");
    expect(show).toContain("Result=success");
    expect(show).toContain("ExecMainStatus=0");
    expect(journal).toContain("starting all preloaded apps");
    expect(answers).toEqual({ [A]: `${A} v1`, [B]: `${B} v1`, [C]: undefined });
  }, 300_000);
});
