/**
 * A disk that fills while an update downloads (the space check passed; something else wrote
 * meanwhile). The device's state (fioup.db and the blob store) is on a tmpfs of its own; the
 * download stalls at the fault proxy in front of the gateway while a file of other data takes
 * every free byte. fioup must say the disk filled, naming the blob store, and exit 41 as the
 * space check would, not die on the database's "disk is full" with exit 1; once the space is
 * freed the same command resumes and completes.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { rmSync, statfsSync } from "node:fs";
import { until } from "../harness/tmp.ts";
import { httpdImage, pushImageDetailed, randomBytes, startProxiedDevice, type ProxiedDevice } from "./_setup.ts";

const APP = `diskfill${process.pid}`;
const REPO = "test/diskfill";
const MiB = 1 << 20;
let rig: ProxiedDevice;

beforeAll(async () => {
  rig = await startProxiedDevice({ app: APP, repo: REPO, body: "v1", config: "[pacman]\nstorage_watermark = 100\n" });
  const { ref } = await pushImageDetailed(rig.upstream, REPO, "v2", { ...httpdImage("v2"), layers: [{ "/www/index.html": "v2" }, { "/big.bin": randomBytes(24 * MiB) }] });
  await rig.pub.commit({ [`${APP}/docker-compose.yml`]: `services:\n  web:\n    image: ${ref}\n    stop_grace_period: 1s\n    ports:\n      - "127.0.0.1:${rig.port}:80"\n` });
  await rig.pub.publish(2);
  await rig.device.stateOnTmpfs("256m"); // registered already: copied in
}, 180_000);

afterAll(async () => {
  await rig?.device.stateOffTmpfs();
  await rig?.stop();
});

test("a disk that fills during the download exits 41 naming the blob store; freed, the same command resumes and completes", async () => {
  // The first connection to carry 4 MiB (the big layer) stalls there while the disk fills.
  rig.proxy.inject({ kind: "stall", afterBytes: 4 * MiB, stallMs: 4000 });
  const p = rig.device.spawn(["update"]);
  const stderr = new Response(p.stderr).text();
  let fillers: string[] = [];
  try {
    await until("the download to stall mid-layer", () => rig.proxy.applied.length, (n) => n === 1, 60_000, 50);
    fillers = await rig.device.fillStateDisk();
    expect(statfsSync(rig.device.sotaDir).bavail).toBe(0);
  } catch (e) {
    p.kill("SIGKILL");
    await p.exited;
    throw e;
  }
  const [code, err] = await Promise.all([p.exited, stderr]);
  expect(err).toContain(`the disk holding ${rig.device.storeDir} filled during the fetch; free space there and run the update again`);
  expect(code, err).toBe(41);

  for (const f of fillers) rmSync(f);
  const again = await rig.device.fioup("update");
  expect(again.code, again.stderr).toBe(0);
  expect(again.json.state).toBe("completed");
}, 180_000);
