/**
 * Two real fioup devices updated through gateway replicas: two `gateway serve` replicas on one
 * PostgreSQL with a shared registry directory, behind HAProxy (deploy/haproxy/gateway.cfg as
 * shipped, devices' certificates passed in a header). Both devices register and install v1
 * through the proxy; v2 brings a layer of some tens of MB.
 * - Device A updates to v2 normally.
 * - Device B's download of the big layer is frozen partway (SIGSTOP of fioup, so the cut lands
 *   at a known offset whatever the machine's speed), the replica streaming it is SIGKILLed, and
 *   fioup carries on: its retry reaches the other replica through the proxy, which resumes the
 *   layer with Range from the bytes already on the device's disk.
 * What the operator checks: both devices run v2 and their events are in the database (read
 * through the survivor), and the gateway's own byte counters (gateway_registry_bytes_served_total)
 * show the survivor served only the rest of the layer, the device's whole fetch well under twice it.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import {
  asTestGateway, collectCli, Device, httpdCompose, httpdImage, httpGet, Publisher, pushImageDetailed, randomBytes,
  type DockerRegistryHandle, type DockerdHandle, type TestGateway,
} from "../fioup/_setup.ts";
import { startDockerd } from "../harness/dockerd.ts";
import { startDockerRegistry } from "../harness/docker-registry.ts";
import { servedBytes, type GatewayHandle } from "../harness/gateway.ts";
import { startPostgres, type PostgresHandle } from "../harness/postgres.ts";
import { startReplicasBehindHaproxy, type ProxyHandle } from "../harness/proxies.ts";
import { freePort, until } from "../harness/tmp.ts";

const MiB = 1 << 20;
/**
 * The big layer of v2 (random bytes: gzip does not shrink it), and how much of it is on device
 * B's disk when its replica is killed. Loopback socket buffers (autotuned up to tcp_rmem's
 * maximum, 32 MiB here) can hold much of the rest, already handed over by the killed replica;
 * the layer is big enough that the survivor still has part of it to send.
 */
const LAYER = 48 * MiB;
const CUT_AT = 8 * MiB;
/** What a replica serves a device for an update beyond the big layer (config, small layers). */
const SMALL = MiB;
const APP_A = `repla${process.pid}`;
/** What v2 serves, on each app's own port. */
const V2_PAGE = "repl v2";
const APP_B = `replb${process.pid}`;

let pg: PostgresHandle;
let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let proxy: ProxyHandle;
const replicas: GatewayHandle[] = [];
let gw: TestGateway;
let pub: Publisher;
const ports: Record<string, number> = {};
const devices: Record<string, { device: Device; uuid: string }> = {};

beforeAll(async () => {
  [pg, dockerd, upstream] = await Promise.all([startPostgres(), startDockerd(), startDockerRegistry()]);
  const db = await pg.createDatabase("replicasfioup");
  const started = await startReplicasBehindHaproxy({ db, count: 2, args: ["--polling-seconds", "1"] });
  replicas.push(...started.replicas);
  proxy = started.proxy;
  const first = replicas[0]!;
  // Devices, the publisher and the admin reach the replicas only through the proxy.
  gw = { ...asTestGateway(first), url: proxy.url, host: `127.0.0.1:${proxy.port}` };

  ports[APP_A] = await freePort();
  ports[APP_B] = await freePort();
  const v1 = await Promise.all([APP_A, APP_B].map((app) => pushImageDetailed(upstream, `repl/${app}`, "v1", httpdImage(`${app} v1`))));
  pub = await Publisher.create(gw, upstream, {
    [`${APP_A}/docker-compose.yml`]: httpdCompose(v1[0]!.ref, ports[APP_A]!),
    [`${APP_B}/docker-compose.yml`]: httpdCompose(v1[1]!.ref, ports[APP_B]!),
  });
  // Each device runs one of the two apps (one dockerd on the machine: distinct compose projects and ports).
  for (const app of [APP_A, APP_B]) {
    const device = await Device.create(dockerd);
    devices[app] = { device, uuid: await device.register(gw, ["--apps", app]) };
  }
  await pub.publish(1);
  await Promise.all(
    Object.values(devices).map(async ({ device }) => {
      const r = await device.fioup("update");
      if (r.code !== 0) throw new Error(`v1 update failed: ${r.stderr}`);
    }),
  );
  expect(await httpGet(ports[APP_A]!)).toBe(`${APP_A} v1`);
  expect(await httpGet(ports[APP_B]!)).toBe(`${APP_B} v1`);

  // v2: one image with the big layer for both apps (built and pushed once; each device fetches it into its own store).
  const v2 = await pushImageDetailed(upstream, "repl/big", "v2", { ...httpdImage(V2_PAGE), layers: [{ "/www/index.html": V2_PAGE }, { "/big.bin": randomBytes(LAYER) }] });
  await pub.commit({
    [`${APP_A}/docker-compose.yml`]: httpdCompose(v2.ref, ports[APP_A]!),
    [`${APP_B}/docker-compose.yml`]: httpdCompose(v2.ref, ports[APP_B]!),
  });
  await pub.publish(2);
  // The replica a device's check reaches may serve the timestamp it cached up to a second before
  // the publish (gateway/store/tuf-cache.ts): each device checks until it sees version 2.
  for (const { device } of Object.values(devices))
    await until("the device's check to see version 2", async () => (await device.fioup("check")).json?.update?.name, (n) => n === "amd64-linux-2", 20_000, 300);
}, 180_000);

afterAll(async () => {
  await devices[APP_A]?.device.cleanup([APP_A, APP_B]).catch(() => {});
  await proxy?.stop();
  for (const r of replicas) await r.stop();
  await Promise.all([pg?.stop(), upstream?.stop()]);
  await dockerd?.stop();
}, 120_000);

/** Blob bytes each replica served `uuid` so far (a dead replica counts as `dead`). */
async function blobBytes(uuid: string, dead?: GatewayHandle): Promise<number[]> {
  return Promise.all(replicas.map(async (r) => (r === dead ? 0 : (await servedBytes(r, `device:${uuid}`)).blob)));
}

/** The device's v2 update as the gateway recorded it (events through any replica: they share the database). */
async function v2Update(via: GatewayHandle, uuid: string) {
  const res = await via.adminFetch(`/admin/devices/${uuid}/updates`);
  expect(res.status).toBe(200);
  const { updates } = (await res.json()) as { updates: { targetName?: string; success?: boolean; events: { eventType: { id: string } }[] }[] };
  return updates.find((u) => u.targetName === "amd64-linux-2");
}

test("device A updates to v2 through the replicas", async () => {
  const { device, uuid } = devices[APP_A]!;
  const before = await blobBytes(uuid);
  const r = await device.fioup("update");
  expect(r.code, r.stderr).toBe(0);
  expect(await httpGet(ports[APP_A]!)).toBe(V2_PAGE);
  const after = await blobBytes(uuid);
  const served = after.reduce((n, b, i) => n + b - before[i]!, 0);
  console.log(`device A: replicas served ${after.map((b, i) => b - before[i]!).join(" + ")} blob bytes (layer ${LAYER})`);
  expect(served).toBeGreaterThanOrEqual(LAYER);
  expect(served).toBeLessThan(LAYER + SMALL);
  expect((await v2Update(replicas[0]!, uuid))?.success).toBe(true);
}, 120_000);

test("device B: the replica streaming its layer is SIGKILLed mid-blob; the other replica resumes it and B runs v2", async () => {
  const { device, uuid } = devices[APP_B]!;
  const before = await blobBytes(uuid);
  const proc = device.spawn(["update", "--format", "json"]);
  const result = collectCli(proc, "fioup update", process.env.FIOUP_TEST_VERBOSE);

  // Wait until enough of the layer is on the device's disk (or fioup ended), then freeze fioup there.
  await until(
    `${CUT_AT} B of the layer in device B's ingest dir`,
    async () => ({ onDisk: await device.ingestBytes(), exitCode: proc.exitCode }),
    (v) => v.onDisk >= CUT_AT || v.exitCode !== null,
    60_000,
    10,
  );
  expect(proc.exitCode).toBeNull();
  process.kill(proc.pid, "SIGSTOP");
  let victim: GatewayHandle | undefined;
  let victimServed = 0;
  let onDisk = 0;
  try {
    // The replica streaming the layer is the one whose count for B grew by megabytes.
    await Bun.sleep(50);
    onDisk = await device.ingestBytes();
    const now = await blobBytes(uuid);
    const grew = now.map((b, i) => b - before[i]!);
    const i = grew.indexOf(Math.max(...grew));
    expect(grew[i]!).toBeGreaterThan(CUT_AT - SMALL);
    victim = replicas[i]!;
    victimServed = grew[i]!;
    await victim.kill();
  } finally {
    process.kill(proc.pid, "SIGCONT");
  }
  const survivor = replicas.find((r) => r !== victim)!;

  let r = await result;
  const runs = [r.code];
  // fioup resumes within its run; a daemon would run the update again if it gave up.
  while (r.code !== 0 && runs.length < 3) {
    r = await device.fioup("update");
    runs.push(r.code);
  }
  expect(r.code, r.stderr).toBe(0);
  expect(await httpGet(ports[APP_B]!)).toBe(V2_PAGE);

  const fromSurvivor = (await servedBytes(survivor, `device:${uuid}`)).blob - before[replicas.indexOf(survivor)]!;
  const total = victimServed + fromSurvivor;
  console.log(
    `device B: ${onDisk} B of the ${LAYER} B layer on disk at the cut; killed replica served >= ${victimServed} B, ` +
      `survivor ${fromSurvivor} B; total ${(total / LAYER).toFixed(2)}x the layer; fioup runs exit ${runs.join(", ")}, ` +
      `fioup counted ${r.json?.bytesFetched ?? "?"} B`,
  );
  // Resumed, not restarted: the survivor sent only what the device did not have yet.
  expect(fromSurvivor).toBeLessThanOrEqual(LAYER - onDisk + SMALL);
  // The switch happened mid-blob: the survivor sent part of the layer, not only small blobs.
  expect(fromSurvivor).toBeGreaterThan(SMALL);
  expect(total).toBeLessThan(1.5 * LAYER);
  // The device's own count agrees: no byte of the layer received twice.
  expect(r.json?.bytesFetched).toBeLessThan(LAYER + SMALL);

  // Both devices' events reached the database, read through the replica left.
  for (const { uuid: u } of Object.values(devices)) {
    const v2 = await v2Update(survivor, u);
    expect(v2?.success).toBe(true);
    expect(v2?.events.map((e) => e.eventType.id)).toContain("EcuInstallationCompleted");
  }
}, 120_000);
