/**
 * preload and a rollout that holds the newest version back, against a real gateway: the
 * gateway offers that version to no device the rollout has not released it to (and a device
 * registered later never is a member), so an image made without --target gets the newest version
 * no rollout holds back, saying which rollout held which version; --target names the held one
 * on purpose and is warned about in the words `gateway export` uses; a publish token, which may
 * not read rollouts, gets the newest version without a word; and when every version is held back,
 * no image is made without --target (exit 20), saying which rollouts hold them.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { GatewayHandle } from "../harness/gateway.ts";
import { tempDir } from "../harness/tmp.ts";
import { Device, httpdCompose, httpdImage, Publisher, pushImage, startDockerd, startDockerRegistry, type DockerdHandle, type DockerRegistryHandle } from "../fioup/_setup.ts";
import { asTestGateway, factoryConfig, preload, preloadConfig, startTestGateway } from "./_setup.ts";

const A = "pl9a";
let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gw: GatewayHandle;
let pub: Publisher;
let work: string;
let fc: string;
/** The rollout of version 2, paused (as in the review: `gateway rollouts pause`). */
let rollout: string;

beforeAll(async () => {
  [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startTestGateway()]);
  const ref = await pushImage(upstream, `test/${A}`, "v1", httpdImage(`${A} v1`));
  pub = await Publisher.create(asTestGateway(gw), upstream, { [`${A}/docker-compose.yml`]: httpdCompose(ref, 18095) });
  await pub.publish(1);
  // A device with the tag, the rollout's audience; then the rollout, before version 2 is published (docs/rollouts.md).
  await (await Device.create(dockerd)).register(asTestGateway(gw), ["--tag", "master"]);
  rollout = (await asTestGateway(gw).admin<{ id: string }>("/admin/rollouts", { method: "POST", body: JSON.stringify({ target: "2", tag: "master", waves: [50, 100] }) })).id;
  await asTestGateway(gw).admin(`/admin/rollouts/${rollout}/pause`, { method: "POST" });
  await pub.commit({ [`${A}/docker-compose.yml`]: httpdCompose(ref, 18096) });
  await pub.publish(2);
  work = await tempDir("preload-rollout-");
  fc = await factoryConfig(preloadConfig());
}, 120_000);

afterAll(async () => {
  await Promise.all([gw?.stop(), upstream?.stop()]);
  await dockerd?.stop();
});

async function tokenOf(role: string): Promise<string> {
  return (await asTestGateway(gw).admin<{ token: string }>("/admin/tokens", { method: "POST", body: JSON.stringify({ role, name: `preload ${role}` }) })).token;
}

const run = (out: string, token: string, ...extra: string[]) =>
  preload(["--factory-config", fc, "--ref", "refs/heads/master", "--server", gw.url, "--token", token, "--hwid", "amd64-linux", "--out", join(work, out), "--json", ...extra]);

const preloaded = (out: string) => JSON.parse(readFileSync(join(work, out, "var/sota/preload/target.json"), "utf8")).name;

const held = () => `rollout ${rollout} (paused, tag master, wave 1 of 2) holds version 2 back from the devices it has not released it to`;

test("without --target, a viewer token gets the newest version no rollout holds back, and is told which rollout held which", async () => {
  const r = await run("default", await tokenOf("viewer"));
  expect(r.code, r.stderr).toBe(0);
  expect(r.json).toMatchObject({ target: "amd64-linux-1" });
  expect(preloaded("default")).toBe("amd64-linux-1");
  expect(r.stderr).toContain(`${held()}: preloading version 1, the newest no rollout holds back, which is what a device registering now is offered (--target 2 preloads version 2 anyway)`);
}, 120_000);

test("--target of the held version preloads it, with the warning gateway export gives in the same words", async () => {
  const r = await run("named", await tokenOf("viewer"), "--target", "2");
  expect(r.code, r.stderr).toBe(0);
  expect(preloaded("named")).toBe("amd64-linux-2");
  expect(r.stderr).toContain(`warning: ${held()}: devices made from this image run it from their first boot all the same`);
  expect(r.stderr).toContain("without --target, preload takes the newest version no rollout holds back (1)");
}, 120_000);

test("a publish token may not read rollouts: the newest version, and not a word of rollouts", async () => {
  const r = await run("publish", await tokenOf("publish"));
  expect(r.code, r.stderr).toBe(0);
  expect(preloaded("publish")).toBe("amd64-linux-2");
  expect(r.stderr).not.toMatch(/rollout \S+ \(|rollouts/);
}, 120_000);

test("every version held back: no image without --target (exit 20), naming the rollouts", async () => {
  const v1 = (await asTestGateway(gw).admin<{ id: string }>("/admin/rollouts", { method: "POST", body: JSON.stringify({ target: "1", tag: "master", waves: [100] }) })).id;
  const r = await run("none", gw.adminToken);
  expect(r.code, r.stderr).toBe(20);
  expect(r.stderr).toContain(`No target for hardware id amd64-linux and tag master that no rollout holds back in `);
  expect(r.stderr).toContain(`${held()}; rollout ${v1} (running, tag master, wave 1 of 1) holds version 1 back from the devices it has not released it to; a device registering now is offered none of them: give --target 2 to preload version 2 anyway`);
}, 120_000);
