/**
 * What the gateway knows of a daemon's update on a bad link, through a fault proxy in front of
 * the gateway (TUF, registry and events all cross it), with a long polling interval (300 s, so
 * only push and the daemon's own retry can start a cycle within the test):
 *
 * - while a download is held mid-way (a stall), the gateway already shows the device
 *   "updating": the events queued before the fetch went as it began, not when it ended;
 * - a download the link cut (the proxy down past fioup's 60 s patience) is retried within
 *   seconds of the link's return, not a polling interval later, and the gateway hears of the
 *   failure then.
 *
 * About two minutes of waiting (a link down past fioup's 60 s patience, a 25 s stall), so it runs
 * in `npm run reliability`, not in `npm test` (scripts/long-tests.ts), keeping `npm test` inside
 * its 20 minutes on 2 cores.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { until } from "../harness/tmp.ts";
import {
  httpdCompose, httpdImage, pushImageDetailed, randomBytes, startProxiedDevice, type ProxiedDevice,
} from "./_setup.ts";

const APP = `dnet${process.pid}`;
const REPO = `dnet/web${process.pid}`;
const MiB = 1 << 20;
let rig: ProxiedDevice;
let uuid: string;
let version = 1;
let daemon: ReturnType<ProxiedDevice["device"]["spawn"]> | undefined;
let log = "";

beforeAll(async () => {
  rig = await startProxiedDevice({ app: APP, repo: REPO, body: "dnet v1", config: "[uptane]\npolling_seconds = 300\n[fioup]\ndownload_stall_seconds = 30\n" });
  const r = await rig.device.fioup("update");
  if (r.code !== 0) throw new Error(`v1 update failed: ${r.stderr}`);
  uuid = (await rig.device.fioup("status")).json?.uuid ?? "";
  daemon = rig.device.spawn(["daemon"]);
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of daemon!.stderr as ReadableStream<Uint8Array>) log += decoder.decode(chunk, { stream: true });
  })();
  await until("the daemon's first cycle", () => log, (l) => l.includes("up to date"), 60_000, 100);
}, 240_000);

afterAll(async () => {
  daemon?.kill("SIGTERM");
  await daemon?.exited;
  await rig?.stop();
});

/** Publishes a version with a `size`-byte random layer. */
async function publishBig(size: number): Promise<number> {
  version++;
  const body = `dnet v${version}`;
  const { ref } = await pushImageDetailed(rig.upstream, REPO, `v${version}`, { ...httpdImage(body), layers: [{ "/www/index.html": body }, { "/big.bin": randomBytes(size) }] });
  await rig.pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(ref, rig.port) });
  await rig.pub.publish(version);
  return version;
}

/** The device's status in the gateway's fleet view. */
async function fleetStatus(): Promise<string | undefined> {
  const r = await rig.gw.admin<{ devices: { uuid: string; name?: string; status?: string }[] }>("/admin/fleet/devices");
  return (r.devices.find((d) => d.uuid === uuid) ?? r.devices[0])?.status;
}

test("while the download is held mid-way, the gateway already shows the device updating", async () => {
  expect(await fleetStatus()).not.toBe("updating");
  // Held for 25 s once 3 MiB came: the fetch is still running while the gateway is asked.
  rig.proxy.inject({ kind: "stall", afterBytes: 3 * MiB, stallMs: 25_000 });
  const v = await publishBig(24 * MiB);
  const seen = await until(
    "the gateway showing 'updating' while the device fetches",
    async () => {
      const status = await fleetStatus();
      return { status, device: rig.device.updateState()?.state };
    },
    (x) => x.status === "updating" && x.device === "fetching",
    20_000,
    200,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\n${log}`);
  });
  expect(seen.status).toBe("updating");
  await until(`the update to v${v}`, () => log, (l) => l.includes(`updated to`) && l.includes(`-${v} (`), 90_000, 200);
}, 150_000);

test("a download the link cut is retried soon after the link is back, and the gateway hears of the failure", async () => {
  const before = (await rig.gw.admin<{ updates: { success?: boolean }[] }>(`/admin/devices/${uuid}/updates`)).updates.filter((u) => u.success === false).length;
  // The proxy goes down 3 MiB into the download, for longer than fioup's 60 s patience: the fetch fails.
  rig.proxy.inject({ kind: "down", afterBytes: 3 * MiB, downMs: 75_000 });
  const v = await publishBig(24 * MiB);
  await until("the fetch failing", () => log, (l) => l.includes("update failed"), 120_000, 200);
  await until("the proxy back", () => rig.proxy.isDown, (d) => !d, 90_000, 100);
  const back = Date.now();
  await until(
    "the failure at the gateway",
    async () => (await rig.gw.admin<{ updates: { success?: boolean }[] }>(`/admin/devices/${uuid}/updates`)).updates.filter((u) => u.success === false).length,
    (n) => n > before,
    30_000,
    500,
  ).catch((e: Error) => {
    throw new Error(`${e.message}\n${log}`);
  });
  await until(`the retried update to v${v}`, () => log, (l) => l.includes(`-${v} (`), 60_000, 200).catch((e: Error) => {
    throw new Error(`${e.message}\n${log}`);
  });
  expect(Date.now() - back).toBeLessThan(60_000);
}, 300_000);
