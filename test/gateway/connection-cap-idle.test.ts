/**
 * At the connection cap, idle kept-alive connections give way to new ones
 * (gateway/transport/connection-caps.ts): with `--max-connections 20`, eighteen devices hold
 * GET /repo/wait (their 90%), kept-alive connections sit idle in the rest (the admin's, devices'
 * after their check-in), and devices that check in on new connections are still answered: each
 * new connection closes the longest idle one, whose client reconnects when it next asks. The
 * held waits are never closed for that. Devices that connect at the same moment at the cap do not
 * close each other's connections, still in their TLS handshake, while idle ones remain.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { metricSample, startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { SimFleet } from "../harness/sim-devices.ts";
import { until } from "../harness/tmp.ts";

let gw: GatewayHandle;
let fleet: SimFleet;

beforeAll(async () => {
  gw = await startGateway({ args: ["--max-connections", "20"] });
  fleet = await SimFleet.register(gw, { count: 50, concurrency: 4, pullManifests: false });
}, 90_000);

afterAll(async () => {
  await gw?.stop();
}, 30_000);

const metric = (name: string) => metricSample(gw, `gateway_${name}`);
/** A check-in on the device's kept-alive connection (a new one if it has none): the status, or the error's code. */
const checkIn = (i: number) =>
  fleet.devices[i]!.fetch("/repo/timestamp.json").then(
    async (r) => {
      await r.arrayBuffer(); // read whole: the connection is kept for the device's next request
      return r.status;
    },
    (err: NodeJS.ErrnoException) => err.code ?? String(err),
  );

test("at the cap, new check-ins close idle kept-alive connections, never a held push wait", async () => {
  const res = await fleet.devices[0]!.fetch("/repo/timestamp.json");
  const { version } = ((await res.json()) as { signed: { version: number } }).signed;
  const stop = new AbortController();
  const holds = fleet.devices.slice(0, 18).map((d) => d.fetch(`/repo/wait?after=${version}&timeout=60`, { signal: stop.signal }).then((r) => r.status, () => 0));
  await until("18 push waits held", () => metric("push_waits_held"), (n) => n === 18, 30_000);

  // The rest of the cap is taken by kept-alive connections sitting idle: the admin's (the fleet's
  // token request, these metrics reads) and, while there is room, devices' check-ins.
  let next = 18;
  while ((await metric("connections_open")) < 20) expect(await checkIn(next++)).toBe(200);
  expect(await metric("connections_open")).toBe(20);

  // Other devices check in on new connections, one after another, each kept alive after its answer.
  const statuses: (number | string)[] = [];
  for (let i = next; i < next + 8; i++) statuses.push(await checkIn(i));
  expect(statuses).toEqual(Array(8).fill(200));

  // The clients whose idle connections were closed reconnect: the first of those devices, and the admin (metrics).
  expect(await checkIn(next)).toBe(200);
  expect(await metric("push_waits_held")).toBe(18);
  await until("20 connections open (the closed idle ones gone)", () => metric("connections_open"), (n) => n === 20);

  stop.abort();
  expect(await Promise.all(holds)).toEqual(Array(18).fill(0)); // every wait was still held until aborted
}, 120_000);

test("devices connecting at the same moment at the cap each close an idle connection, not each other's", async () => {
  await until("the last test's waits gone", () => metric("push_waits_held"), (n) => n === 0, 30_000);
  const res = await fleet.devices[0]!.fetch("/repo/timestamp.json");
  const { version } = ((await res.json()) as { signed: { version: number } }).signed;
  const stop = new AbortController();
  const holds = fleet.devices.slice(0, 10).map((d) => d.fetch(`/repo/wait?after=${version}&timeout=60`, { signal: stop.signal }).then((r) => r.status, () => 0));
  await until("10 push waits held", () => metric("push_waits_held"), (n) => n === 10, 30_000);
  // Ten kept-alive connections sit idle beside the ten waits.
  let next = 30;
  while ((await metric("connections_open")) < 20) expect(await checkIn(next++)).toBe(200);
  const cappedBefore = await metric("connections_capped_total");

  // Eight devices without a connection check in at once: each new connection must close an idle
  // one. Taking the youngest unauthenticated one instead (the device accepted just before, still
  // in its handshake) would cut seven of them.
  const burst = await Promise.all(Array.from({ length: 8 }, (_, i) => checkIn(40 + i)));
  expect(burst).toEqual(Array(8).fill(200));
  expect((await metric("connections_capped_total")) - cappedBefore).toBeGreaterThanOrEqual(8);
  expect(await metric("push_waits_held")).toBe(10);
  stop.abort();
  await Promise.all(holds);
}, 120_000);
