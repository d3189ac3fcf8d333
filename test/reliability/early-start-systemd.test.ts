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
 * cache stays as built), a copy of it where overlayfs cannot be mounted: test/harness/nspawn.ts
 * builds, boots and removes it, for this test and the registration boot test.
 * Slow (root file system, boot): this runs in the reliability suite.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, copyFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { binaryPath, buildOne, isFresh } from "../../scripts/build.ts";
import { Publisher, asTestGateway, freePort, httpGet, httpdCompose, httpdImage, pushImage, startDockerRegistry, startDockerd, type DockerRegistryHandle, type DockerdHandle } from "../fioup/_setup.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { run, tempDir } from "../harness/tmp.ts";
import { factoryConfig, preload, preloadConfig } from "../preload/_setup.ts";
import { BootedTree, cachedRootfs } from "../harness/nspawn.ts";
import { Tally } from "./_tally.ts";

const tally = new Tally("early-start");
const UNIT = "compose-apps-early-start.service";
const [A, B, C] = [`esa${process.pid}`, `esb${process.pid}`, `esc${process.pid}`];
const port: Record<string, number> = {};

let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gw: GatewayHandle;
let tree: BootedTree | undefined;

beforeAll(async () => {
  const [fs] = await Promise.all([
    cachedRootfs(),
    (async () => (isFresh("fioup", "x64") ? undefined : await buildOne("fioup", "x64")))(),
  ]);
  [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startGateway({ args: ["--polling-seconds", "1"] })]);
  for (const n of [A, B, C]) port[n] = await freePort();
  const refs = await Promise.all([A, B, C].map((n) => pushImage(upstream, `test/${n}`, "v1", httpdImage(`${n} v1`))));
  const pub = await Publisher.create(asTestGateway(gw), upstream, Object.fromEntries([A, B, C].map((n, i) => [`${n}/docker-compose.yml`, httpdCompose(refs[i]!, port[n]!)])));
  await pub.publish(1);

  tree = await BootedTree.over(fs, await tempDir("early-start-root-"));
  const root = tree.root;
  const image = join(tree.work, "image");
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
  await tree?.remove();
  for (const p of [A, B, C]) {
    const ids = (await dockerd?.docker("ps", "-aq", "--filter", `label=com.docker.compose.project=${p}`).catch(() => ""))?.trim();
    if (ids) await dockerd.docker("rm", "-f", ...ids.split("\n")).catch(() => {});
  }
  await upstream?.stop();
  await dockerd?.stop();
});

describe("early start under systemd", () => {
  test("booted in systemd-nspawn, systemd runs compose-apps-early-start and only the preloaded apps come up", async () => {
    const sock = dockerd.env.DOCKER_HOST!.replace(/^unix:\/\//, "");
    const leader = await tree!.boot(sock, 180_000).catch(() => undefined);
    const active = leader ? await tree!.waitActive(UNIT, ["active", "failed"], 180_000) : "";
    const show = leader ? (await tree!.inside("systemctl", "show", "-p", "Result,ExecMainStatus,ActiveState,ConditionResult", UNIT)).stdout : "";
    const journal = leader ? (await tree!.inside("journalctl", "-u", UNIT, "--no-pager", "-o", "cat")).stdout : "";
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
