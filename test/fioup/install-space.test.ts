/**
 * Docker's data root full while the update's blobs are in the store already (fetched earlier,
 * the install run later): the fetch has nothing to fetch and so no space to check, and the
 * install's `docker load` would hit ENOSPC inside the engine, be rolled back, and be tried
 * again at every poll. The install checks the data root before loading: it refuses with the
 * fetch's "Not enough space" and exit 41, the running app untouched; the daemon refuses it again
 * each poll without loading anything; with room again the update goes through.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { collectCli } from "./_setup.ts";
import { smallDockerRig, type SmallDockerRig } from "./_small-docker.ts";

const APP = `instspace${process.pid}`;
const MiB = 1 << 20;
let rig: SmallDockerRig;

/** The image the app's container runs. */
async function running(): Promise<string> {
  return (await rig.dockerd.docker("ps", "--filter", `label=com.docker.compose.project=${APP}`, "--format", "{{.Image}}")).trim();
}

beforeAll(async () => {
  rig = await smallDockerRig({ app: APP, repo: `instspace/app${process.pid}`, sizeMiB: 160 });
}, 180_000);

afterAll(async () => {
  await rig?.stop();
});

test("fetched blobs, Docker's data root filled since: the install refuses with exit 41 before loading, the app untouched, and each poll refuses again", async () => {
  const v1 = await running();
  expect(v1).toContain(":fioup-");
  const { device, dockerd } = rig;
  await rig.publishWithZeros(48 * MiB);
  const fetched = await device.fioup("fetch");
  expect(fetched.code, fetched.stderr).toBe(0);

  // Something else takes Docker's disk: 24 MiB left above the watermark, half the layer unpacked.
  const filler = join(dockerd.dataRoot, "filler.bin");
  writeFileSync(filler, new Uint8Array(Math.floor((await rig.dockerAvailable()) - 24 * MiB)).fill(1));
  try {
    const r = await device.fioup("install");
    expect(r.stderr).toContain("Not enough space for the update in Docker's data root");
    expect(r.stderr).toContain(dockerd.dataRoot);
    expect(r.stderr).not.toContain("rolling back");
    expect(r.code, r.stderr).toBe(41);
    expect(await running()).toBe(v1);
    expect((await device.fioup("status", "--no-apps")).json.current.name).toBe("amd64-linux-1");

    // The daemon: each poll refuses before the engine loads a byte; nothing is rolled back.
    const d = await collectCli(device.spawn(["daemon", "--cycles", "2"]), "fioup daemon");
    const out = d.stdout + d.stderr;
    expect(out.match(/update failed: Not enough space for the update in Docker's data root/g) ?? [], out).toHaveLength(2);
    expect(out).not.toContain("rolling back");
    expect(out).not.toContain("Loaded image");
    expect(await running()).toBe(v1);
    // Room may come: the target is not marked bad.
    expect((await device.fioup("status", "--no-apps")).json.badTargets).not.toContain("amd64-linux-2");
  } finally {
    rmSync(filler, { force: true });
  }

  // Room again: the next update installs it from the blobs it has.
  const r = await device.fioup("update");
  expect(r.code, r.stderr).toBe(0);
  expect(r.json.toTarget).toBe("amd64-linux-2");
  expect(await running()).not.toBe(v1);
}, 240_000);
