/**
 * Disk: the device's /var/sota and the container engine's data root share one
 * small ext4 filesystem (an image made with mkfs.ext4 and loop-mounted; this
 * needs root, which the test machine has), so a full disk hits fioup's store
 * and database, image load and layer extraction alike. The engine is a private
 * dockerd whose data root is that filesystem (test/harness/loop-dockerd.ts); /var/sota is a
 * directory on it, bind-mounted into the device root.
 * An update larger than the free space is refused before a byte is
 * downloaded; a disk that fills up while the update installs leaves the
 * running target serving, and once space is freed the next run completes; an
 * update that needs within 10% of the free space either completes or is
 * refused whole, never half done.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { closeSync, mkdirSync, openSync, readdirSync, rmSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { Database } from "bun:sqlite";
import {
  deviceOnV1,
  Device, Publisher, freePort, httpGet, httpdCompose, httpdImage, pushImageDetailed, randomBytes, startDockerRegistry,
  startTestGateway, type DockerRegistryHandle, type TestGateway,
} from "../fioup/_setup.ts";
import { startLoopDockerd, type LoopDockerdHandle } from "../harness/loop-dockerd.ts";
import { run } from "../harness/tmp.ts";
import { Tally } from "./_tally.ts";

const tally = new Tally("disk");
const APP = `reldisk${process.pid}`;
const MiB = 1 << 20;
const FILL_AT = process.env.REL_FILL_AT ?? "installing";
let dockerd: LoopDockerdHandle;
let upstream: DockerRegistryHandle;
let gw: TestGateway;
let device: Device;
let pub: Publisher;
let port: number;
let mnt: string | undefined;
let disk: string | undefined;

beforeAll(async () => {
  [upstream, gw] = await Promise.all([startDockerRegistry(), startTestGateway()]);
  // One small disk: the engine's data root, and /var/sota on it (bind-mounted into the device root).
  dockerd = await startLoopDockerd({ sizeMiB: 64 });
  disk = dockerd.dataRoot;
  device = await Device.create(dockerd);
  mnt = device.sotaDir;
  mkdirSync(mnt, { recursive: true });
  mkdirSync(join(disk, "ota-sota"), { recursive: true });
  await run(["mount", "--bind", join(disk, "ota-sota"), mnt]);
  port = await freePort();
  ({ pub } = await deviceOnV1({ gw, upstream, device, app: APP, repo: `rel/disk${process.pid}`, port, body: "disk v1" }));
}, 180_000);

afterAll(async () => {
  tally.print();
  await device?.cleanup([APP]).catch(() => {});
  if (mnt) await run(["umount", mnt]).catch((e) => process.stderr.write(`umount ${mnt}: ${e}\n`));
  await Promise.all([gw?.stop(), upstream?.stop()]);
  await dockerd?.stop();
});

async function publishVersion(version: number, bigBytes: number): Promise<string> {
  const body = `disk v${version}`;
  const { ref } = await pushImageDetailed(upstream, `rel/disk${process.pid}`, `v${version}`, {
    ...httpdImage(body),
    layers: [{ "/www/index.html": body }, { "/big.bin": randomBytes(bigBytes) }],
  });
  await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(ref, port) });
  await pub.publish(version);
  return body;
}

function lastState(): string | undefined {
  const db = new Database(join(device.sotaDir, "fioup.db"), { readonly: true });
  try {
    return db.query<{ state: string }, []>("SELECT state FROM updates ORDER BY id DESC LIMIT 1").get()?.state;
  } catch {
    return undefined;
  } finally {
    db.close();
  }
}

/** Writes zeros into `file` until the filesystem is full (as root: reserved blocks too). */
function fill(file: string): number {
  const fd = openSync(file, "w");
  const chunk = new Uint8Array(MiB);
  let n = 0;
  try {
    for (;;) n += writeSync(fd, chunk);
  } catch {
    try {
      for (;;) n += writeSync(fd, chunk.subarray(0, 4096));
    } catch {}
  } finally {
    closeSync(fd);
  }
  return n;
}

describe("a small disk", () => {
  test("an update larger than the free space is refused before any download", async () => {
    await publishVersion(2, 64 * MiB);
    const blobsBefore = readdirSync(join(device.storeDir, "blobs/sha256")).sort();
    const r = await device.fioup("update");
    const blobsAfter = readdirSync(join(device.storeDir, "blobs/sha256")).sort();
    const partial = await device.ingestBytes();
    const served = await httpGet(port);
    const ok = r.code === 41 && /Not enough space/.test(r.stderr) && partial === 0 && served === "disk v1";
    tally.record("update of 64 MiB onto a 64 MiB ext4 shared by /var/sota and the engine", ok ? "refused" : "failed", `exit ${r.code}; ${r.stderr.split("\n").find((l) => /space/i.test(l)) ?? r.stderr.slice(-200)}; partial bytes ${partial}; new blobs ${blobsAfter.length - blobsBefore.length}; serving "${served}"`);
    expect(r.code, r.stderr).toBe(41);
    expect(r.stderr).toMatch(/Not enough space/);
    expect(partial).toBe(0);
    // Metadata-sized blobs (manifest, bundle) may be read to compute the need; no layer is.
    for (const b of blobsAfter.filter((x) => !blobsBefore.includes(x))) expect(statSync(join(device.storeDir, "blobs/sha256", b)).size).toBeLessThan(MiB);
    expect(served).toBe("disk v1");
  }, 180_000);

  test("a disk that fills during install leaves the running target untouched; freeing space lets the next run finish", async () => {
    const body = await publishVersion(3, 2 * MiB);
    const filler = join(device.sotaDir, "filler.bin");
    const proc = device.spawn(["update", "--format", "json"]);
    const out = new Response(proc.stdout).text();
    const err = new Response(proc.stderr).text();
    let exited = false;
    void proc.exited.then(() => (exited = true));
    let filled = 0;
    let at = "";
    while (!exited) {
      const s = lastState();
      if (s === FILL_AT) {
        filled = fill(filler);
        at = s;
        break;
      }
      await Bun.sleep(2);
    }
    const code = await proc.exited;
    const stderr = await err;
    void out;
    if (process.env.REL_VERBOSE) process.stderr.write(stderr);
    const servedDuring = await httpGet(port);
    const running = (await dockerd.docker("ps", "--filter", `label=com.docker.compose.project=${APP}`, "--format", "{{.Image}}")).trim().split("\n").filter(Boolean);
    // The running target: either untouched v1 (install refused) or, if the fill came too late to matter, whole v3.
    const whole = (servedDuring === "disk v1" && code !== 0) || (servedDuring === body && code === 0);
    rmSync(filler, { force: true });
    const again = code === 0 ? { code: 0, stderr: "" } : await device.fioup("update");
    if (again.code !== 0) process.stderr.write(`[disk] first run:\n${stderr}\n[disk] run after freeing space:\n${again.stderr}\n`);
    const st = await device.fioup("status", "--no-apps");
    const served = await httpGet(port);
    const ok = whole && running.length === 1 && again.code === 0 && st.json.current.name === "amd64-linux-3" && served === body;
    tally.record(
      `disk filled (${(filled / MiB).toFixed(1)} MiB) when the update was ${at || "already past install"}`,
      ok ? "survived" : "failed",
      `exit ${code} (${stderr.trim().split("\n").at(-1)?.slice(0, 160)}); served during: "${servedDuring}"; after freeing space: exit ${again.code}, current ${st.json?.current?.name}, serving "${served}"`,
    );
    expect(at).not.toBe("");
    expect(whole).toBe(true);
    expect(running).toHaveLength(1);
    expect(again.code, again.stderr).toBe(0);
    expect(st.json.current.name).toBe("amd64-linux-3");
    expect(served).toBe(body);
  }, 180_000);

  test("an update that needs within 10% of the free space completes or is refused whole, never half done", async () => {
    const df = (await run(["df", "-B1", "--output=avail,size", disk!])).stdout.trim().split("\n")[1]!.trim().split(/\s+/).map(Number);
    const [avail, size] = [df[0]!, df[1]!];
    // On one filesystem the update needs each layer three times (blob, unpacked, docker load's staging copy),
    // above a 5% reserve: aim at 93% of what is left for it.
    const layer = Math.floor((0.93 * (avail - 0.05 * size)) / 3);
    const body = await publishVersion(4, layer);
    const r = await device.fioup("update");
    const st = await device.fioup("status", "--no-apps");
    const served = await httpGet(port);
    const running = (await dockerd.docker("ps", "--filter", `label=com.docker.compose.project=${APP}`, "--format", "{{.Image}}")).trim().split("\n").filter(Boolean);
    const partial = await device.ingestBytes();
    const completed = r.code === 0 && st.json?.current?.name === "amd64-linux-4" && served === body;
    const refused = r.code === 41 && /Not enough space/.test(r.stderr) && st.json?.current?.name === "amd64-linux-3" && served === "disk v3" && partial === 0;
    tally.record(
      `update of ${(layer / MiB).toFixed(1)} MiB layer with ${(avail / MiB).toFixed(1)} MiB free (within 10% of the limit)`,
      completed ? "survived" : refused ? "refused" : "failed",
      `exit ${r.code}; current ${st.json?.current?.name}; serving "${served}"; ${running.length} container(s); partial bytes ${partial}; ${r.stderr.trim().split("\n").at(-1)?.slice(0, 160)}`,
    );
    expect(completed || refused, r.stderr).toBe(true);
    expect(running).toHaveLength(1);
  }, 300_000);
});
