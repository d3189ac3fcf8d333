/**
 * A daemon whose checks the network failed, while the gateway was down, checks again within
 * seconds of the gateway's return, and the events it queued meanwhile reach the gateway then: not
 * when its backoff (10 s doubling toward the poll interval, here 300 s) is up. Its wait for news
 * hears the gateway answer again (fioup/push.ts, "back").
 *
 * The queued event is a real one: an update fetched while the gateway was up, then canceled by
 * hand while it was down (`fioup cancel` cannot report it, and queues it).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { until } from "../harness/tmp.ts";
import { deviceRig, httpdCompose, httpdImage, pushImage, type DeviceRig } from "./_setup.ts";

const APP = `gwback${process.pid}`;
const REPO = `gwback/web${process.pid}`;
const GATEWAY_ARGS = ["--polling-seconds", "1"];
let rig: DeviceRig;
let back: GatewayHandle | undefined;

beforeAll(async () => {
  rig = await deviceRig({ app: APP, repo: REPO, body: "gwback v1" });
}, 180_000);

afterAll(async () => {
  await back?.stop();
  await rig?.stop();
});

/** The device's updates the gateway heard failed or were canceled. */
async function failedAtGateway(): Promise<number> {
  const r = await rig.gw.admin<{ updates: { success?: boolean }[] }>(`/admin/devices/${rig.uuid}/updates`);
  return r.updates.filter((u) => u.success === false).length;
}

test("after an outage the daemon checks, and sends what it queued, within seconds of the gateway's return", async () => {
  const { device, pub, upstream, port } = rig;
  const ref = await pushImage(upstream, REPO, "v2", httpdImage("gwback v2"));
  await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(ref, port) });
  await pub.publish(2);
  const f = await device.fioup("fetch");
  expect(f.json?.state, f.stderr).toBe("fetched");
  expect(await failedAtGateway()).toBe(0);

  const { dataDir } = rig.gwHandle;
  await rig.gwHandle.stop();
  // Canceled while the gateway is away: the event is queued on the device.
  const c = await device.fioup("cancel");
  expect(c.code, c.stderr).toBe(0);
  expect(c.stderr).toContain("cannot report");

  // A long poll interval: only the daemon's network retry, or hearing the gateway again, starts a cycle within the test.
  device.dropIn("z-poll.toml", "[uptane]\npolling_seconds = 300\n");
  const daemon = device.spawn(["daemon"]);
  let log = "";
  const reading = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of daemon.stderr as ReadableStream<Uint8Array>) log += decoder.decode(chunk, { stream: true });
  })();
  try {
    // The third failed check: its retry is 40 s away (± 10%), well past the few seconds expected below.
    const retryS = (l: string) => Math.max(0, ...[...l.matchAll(/trying again in (\d+) s/g)].map((m) => Number(m[1])));
    await until("a network retry 30 s or more away", () => log, (l) => retryS(l) >= 30, 90_000, 100);
    const failedBefore = log;

    back = await startGateway({ dataDir, args: GATEWAY_ARGS });
    const backAt = Date.now();
    // The retry between wait requests is at most 5 s; then the check and the events' flush.
    await until("the canceled update at the gateway", failedAtGateway, (n) => n >= 1, 10_000, 200).catch((e: Error) => {
      throw new Error(`${e.message}\n${log}`);
    });
    const tookMs = Date.now() - backAt;
    const after = log.slice(failedBefore.length);
    expect({ tookMs: tookMs < 10_000, heard: after.includes("the gateway answers again: checking now") }, log).toEqual({ tookMs: true, heard: true });
    // And that check went through: it finds target 2 (canceled, not refused) and updates to it again.
    await until("the update after the return", () => log.slice(failedBefore.length), (l) => l.includes("updated to amd64-linux-2"), 60_000, 100).catch((e: Error) => {
      throw new Error(`${e.message}\n${log}`);
    });
    expect(log.slice(failedBefore.length)).not.toContain("trying again in");
  } finally {
    daemon.kill("SIGTERM");
  }
  expect(await Promise.race([daemon.exited, Bun.sleep(30_000).then(() => "timeout")])).toBe(0);
  await reading;
}, 240_000);
