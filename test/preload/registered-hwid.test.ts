/**
 * A preloaded device registered the way docs/preload.md says, with real parts (gateway, registry,
 * dockerd, `preload`, fioup as the CLI): the image is for amd64-linux, and `fioup register`
 * without --hwid used to register it as `<arch>-linux` (x86_64-linux here), under which no target
 * of the line it runs is offered: `fioup check` said "No update available" for ever. Now the
 * preloaded target's hardware id is the default, a --hwid it is not for is refused (exit 2, nothing
 * written) unless --allow-other-hwid, and `fioup check` warns when the running target is not for
 * the device's hardware id. Also the early-start journal line for a /var/lmp/default-apps name
 * outside the shortlist, or unknown: it says what will really become of it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { GatewayHandle } from "../harness/gateway.ts";
import { Device, Publisher, httpdCompose, httpdImage, pushImage, type DockerRegistryHandle } from "../fioup/_setup.ts";
import { factoryConfig, preload, preloadConfig, threeApps, type ThreeApps } from "./_setup.ts";

// App names are unique per test file: the dockerd is shared with other test processes.
const [A, B, C] = ["rh1a", "rh1b", "rh1c"];
let rig: ThreeApps;
let upstream: DockerRegistryHandle;
let gw: GatewayHandle;
let pub: Publisher;
let device: Device;
let port: Record<string, number>;

beforeAll(async () => {
  rig = await threeApps([A, B, C]);
  ({ upstream, gw, pub, device, port } = rig);
  const fc = await factoryConfig(preloadConfig(`${A},${B}`));
  const r = await preload(["--factory-config", fc, "--ref", "refs/heads/master", "--server", gw.url, "--token", gw.adminToken, "--hwid", "amd64-linux", "--out", device.root, "--format", "dir", "--json"]);
  if (r.code !== 0) throw new Error(`preload failed: ${r.stderr}`);
}, 120_000);

afterAll(async () => {
  await rig?.stop();
});

const registerArgs = () => ["register", "--server", gw.url, "--token", gw.adminToken, "--name", "preloaded-device", "--tag", "master"];

describe("a preloaded device registered as docs/preload.md says", () => {
  test("early start says what becomes of a default-apps name outside the shortlist, and of an unknown one", async () => {
    mkdirSync(join(device.root, "var/lmp"), { recursive: true });
    writeFileSync(join(device.root, "var/lmp/default-apps"), `${B}\n${C}\ntikcer\n`);
    try {
      const r = await device.fioup("early-start");
      expect(r.code, r.stderr).toBe(51);
      const by = Object.fromEntries(r.json.apps.map((a: { name: string }) => [a.name, a]));
      expect(by[B]).toEqual({ name: B, ok: true });
      // C is in the target but not in the shortlist: fioup never starts it, registered or not.
      expect(by[C].error).toContain("outside the device's app shortlist");
      expect(by[C].error).not.toContain("once the device is registered");
      expect(by.tikcer.error).toContain("unknown: target amd64-linux-1 has no app of that name");
    } finally {
      rmSync(join(device.root, "var/lmp/default-apps"));
    }
  }, 120_000);

  test("a --hwid the preloaded target is not for is refused before anything is written", async () => {
    const r = await device.fioup(...registerArgs(), "--hwid", "x86_64-linux");
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toContain("--hwid x86_64-linux is not the hardware id of the preloaded target amd64-linux-1 (amd64-linux)");
    expect(r.stderr).toContain("--allow-other-hwid");
    expect(existsSync(join(device.sotaDir, "sota.toml"))).toBe(false);
    expect(existsSync(join(device.sotaDir, "client.pem"))).toBe(false);
  }, 60_000);

  test("without --hwid the device registers with the preloaded target's and is offered the next target", async () => {
    const r = await device.fioup(...registerArgs());
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ hardwareId: "amd64-linux", hardwareIdFrom: "the preloaded target amd64-linux-1" });
    await pub.commit({ [`${B}/docker-compose.yml`]: httpdCompose(await pushImage(upstream, `test/${B}`, "v2", httpdImage(`${B} v2`)), port[B]!) });
    await pub.publish(2);
    const check = await device.fioup("check");
    expect(check.code, check.stderr).toBe(0);
    expect(check.json.update?.name).toBe("amd64-linux-2");
    expect(check.json.warning).toBeUndefined();
    expect(check.stderr).not.toContain("warning:");
  }, 120_000);

  test("registered under another hardware id on purpose, check warns that the running target's line is not offered", async () => {
    const r = await device.fioup(...registerArgs(), "--force", "--hwid", "x86_64-linux", "--allow-other-hwid");
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.hardwareId).toBe("x86_64-linux");
    const check = await device.fioup("check");
    expect(check.json.update).toBeNull();
    expect(check.stderr).toContain(
      "warning: this device is registered with hardware id x86_64-linux, but the target it runs, amd64-linux-1, is for amd64-linux: no update of amd64-linux-1's line is offered to it",
    );
    expect(check.json.warning).toContain("fioup register --force --hwid amd64-linux");
  }, 120_000);
});
