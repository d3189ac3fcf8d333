/**
 * A preloaded device that registers after its first boot starts polling at once, under a real
 * systemd (`systemd-nspawn -b`, test/harness/nspawn.ts): the image is preload's, with
 * the compiled fioup and lib/device/fioup.service, which preload installs and enables with --fioup.
 * At boot fioup.service is skipped (ConditionPathExists=/var/sota/sota.toml: not registered);
 * `fioup register` inside the booted device, without --hwid as docs/preload.md has it, takes the
 * preloaded target's hardware id and starts fioup.service, which before stayed inactive until the
 * next reboot. The container engine is the harness dockerd (its socket bound in; docker.service
 * inside is a stand-in), the gateway the harness's on loopback (nspawn shares the host's network).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { binaryPath, buildOne, isFresh } from "../../scripts/build.ts";
import { Publisher, asTestGateway, freePort, httpGet, httpdCompose, httpdImage, pushImage, startDockerRegistry, startDockerd, type DockerRegistryHandle, type DockerdHandle } from "../fioup/_setup.ts";
import type { GatewayHandle } from "../harness/gateway.ts";
import { tempDir } from "../harness/tmp.ts";
import { factoryConfig, preload, preloadConfig, startTestGateway } from "./_setup.ts";
import { BootedTree, cachedRootfs } from "../harness/nspawn.ts";

const A = `rsa${process.pid}`;
let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gw: GatewayHandle;
let tree: BootedTree | undefined;
let port: number;

beforeAll(async () => {
  const [lower] = await Promise.all([cachedRootfs(), (async () => (isFresh("fioup", "x64") ? undefined : await buildOne("fioup", "x64")))()]);
  [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startTestGateway()]);
  port = await freePort();
  const ref = await pushImage(upstream, `test/${A}`, "v1", httpdImage(`${A} v1`));
  const pub = await Publisher.create(asTestGateway(gw), upstream, { [`${A}/docker-compose.yml`]: httpdCompose(ref, port) });
  await pub.publish(1);

  tree = await BootedTree.over(lower, await tempDir("registered-boot-"));
  const image = join(tree.work, "image");
  const fc = await factoryConfig(preloadConfig(A));
  // With --fioup, preload writes the binary and the daemon's unit, enabled (docs/preload.md).
  const r = await preload([
    "--factory-config", fc, "--ref", "refs/heads/master", "--server", gw.url, "--token", gw.adminToken, "--hwid", "amd64-linux",
    "--fioup", binaryPath("fioup", "x64"), "--out", image, "--format", "dir", "--json",
  ]);
  if (r.code !== 0) throw new Error(`preload failed: ${r.stderr}`);
  const root = tree.root;
  await Bun.spawn(["cp", "-a", `${image}/.`, root]).exited;
  const units = join(root, "etc/systemd/system");
  writeFileSync(
    join(units, "docker.service"),
    "[Unit]\nDescription=Container engine (the test harness's dockerd; its socket is bound to /run/docker.sock)\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/true\n",
  );
}, 900_000);

afterAll(async () => {
  await tree?.remove();
  const ids = (await dockerd?.docker("ps", "-aq", "--filter", `label=com.docker.compose.project=${A}`).catch(() => ""))?.trim();
  if (ids) await dockerd.docker("rm", "-f", ...ids.split("\n")).catch(() => {});
  await Promise.all([gw?.stop(), upstream?.stop()]);
  await dockerd?.stop();
});

describe("a preloaded device registered after its first boot, under systemd", () => {
  test("fioup.service is skipped at boot and started by fioup register, without a reboot", async () => {
    const t = tree!;
    await t.boot(dockerd.env.DOCKER_HOST!.replace(/^unix:\/\//, ""));
    expect(await t.waitActive("compose-apps-early-start.service", ["active", "failed"], 90_000)).toBe("active");
    expect(await httpGet(port)).toBe(`${A} v1`);
    const before = (await t.inside("systemctl", "show", "-p", "ActiveState,ConditionResult", "fioup.service")).stdout;
    expect(before).toContain("ActiveState=inactive");
    expect(before).toContain("ConditionResult=no");

    const reg = await t.inside("fioup", "register", "--server", gw.url, "--token", gw.adminToken, "--tag", "master", "--name", "booted-device");
    expect(reg.code, reg.stderr).toBe(0);
    expect(reg.stdout).toContain("(booted-device, amd64-linux)");
    expect(reg.stdout).toContain("Hardware id amd64-linux, from the preloaded target amd64-linux-1");
    expect(reg.stderr).toContain("started fioup.service: the daemon polls the gateway from now on");
    const active = await t.waitActive("fioup.service", ["active"], 30_000);
    const journal = (await t.inside("journalctl", "-u", "fioup.service", "--no-pager", "-o", "cat")).stdout;
    expect(active, journal.slice(-2000)).toBe("active");
    expect(readFileSync(join(t.root, "var/sota/sota.toml"), "utf8")).toContain('primary_ecu_hardware_id = "amd64-linux"');

    // Registered again (--force: a new certificate, the old one refused), the running daemon is restarted to read it.
    const pid = async () => (await t.inside("systemctl", "show", "-p", "MainPID", "--value", "fioup.service")).stdout.trim();
    const first = await pid();
    expect(Number(first)).toBeGreaterThan(0);
    const again = await t.inside("fioup", "register", "--force", "--server", gw.url, "--token", gw.adminToken, "--tag", "master", "--name", "booted-device");
    expect(again.code, again.stderr).toBe(0);
    let now = first;
    for (let i = 0; i < 60 && (now === first || now === "0"); i++) {
      await Bun.sleep(250);
      now = await pid();
    }
    expect(now).not.toBe(first);
    expect(await t.waitActive("fioup.service", ["active"], 30_000)).toBe("active");
  }, 300_000);
});
