/**
 * The bound on events waiting for the database, seen by devices: while the SQLite writer's commit
 * is stalled (the fault point holds it inside its transaction until the watchdog ends it), the
 * POST /events beyond the bound are answered 503 with `Retry-After` at once, the same bytes
 * through the app's fetch (a web Request) and through the TLS transport's parsed head
 * (fetchHead); the ones queued before are stored when the writer is back, and the refused ones
 * once the device sends them again. The PostgreSQL store refuses with the same error
 * (./postgres-events.test.ts), which app.ts answers the same way.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { anEvent, json, testGateway } from "../../test/gateway/_fixture.ts";
import { createAdmission } from "../admission.ts";
import type { Bindings } from "../env.ts";
import type { HeadRequest } from "../transport/options.ts";
import type { RequestLoop } from "../transport/requests.ts";
import { exchange as exchangeOn, testLoop } from "../transport/_test-loop.ts";
import { STORE_RETRY_AFTER_S } from "./types.ts";

const MAX = 10;
/** The hung commit is ended after this (the default, 30 s, would outlast the test). */
const WATCHDOG_MS = 4000;

let t: Awaited<ReturnType<typeof testGateway>>;
beforeAll(async () => {
  const env = { GATEWAY_FAULT: "writer-hang-before-commit", GATEWAY_FAULT_NTH: "1", GATEWAY_WRITER_WATCHDOG_MS: String(WATCHDOG_MS), GATEWAY_EVENT_QUEUE_MAX: String(MAX) };
  Object.assign(process.env, env);
  try {
    t = await testGateway({ dbFile: true });
  } finally {
    for (const k of Object.keys(env)) delete process.env[k];
  }
}, 60_000);
afterAll(async () => {
  await t?.close();
}, 60_000);

/** The transport's request loop over the test gateway, answering from the parsed head (fetchHead) or through a Request. */
function loopOf(withHead: boolean) {
  const seen = { head: 0 };
  const loop = testLoop({
    fetch: (req: Request, env: Bindings) => t.app.fetch(req, env),
    ...(withHead
      ? {
          fetchHead: (req: HeadRequest, env: Bindings) => {
            const answer = t.app.fetchHead(req, env);
            if (answer !== undefined) seen.head++; // answered from the parsed head, not declined to fetch
            return answer;
          },
        }
      : {}),
    admit: createAdmission({ devices: t.gw.devices, tokenValid: () => false }),
  });
  return { loop, seen };
}

/** One POST /events on a kept-alive connection of `peer`; the answer's bytes, the date blanked. */
const exchange = async (loop: RequestLoop, peer: Bindings["peer"], body: string) =>
  (await exchangeOn(loop, `POST /events HTTP/1.1\r\nhost: gw.test:8443\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`, peer)).text;

test("a stalled commit: POST /events past the bound get 503 with Retry-After at once, via fetch and via the parsed head alike; nothing queued is lost", async () => {
  // One device per post: a device has one POST /events under way at a time (gateway/devices/writes.ts).
  const devices = await Promise.all(Array.from({ length: 3 + MAX / 2 }, () => t.register()));
  const [hungDevice, over1, over2] = devices;
  const post = (d: (typeof devices)[number], ids: string[]) => t.app.request("/events", json(ids.map((id) => anEvent(id))), { peer: d.peer });
  // The first batch goes to the writer thread, which hangs inside its transaction.
  const hung = post(hungDevice!, ["hung-1"]);
  await Bun.sleep(200);
  // Then MAX events queue behind it.
  const queued = Array.from({ length: MAX / 2 }, (_, i) => ({ d: devices[3 + i]!, ids: [`queued-${i}-a`, `queued-${i}-b`] }));
  const answers = queued.map((q) => post(q.d, q.ids));
  await Bun.sleep(200);
  expect(await Promise.race([Promise.any([hung, ...answers]).then(() => "answered"), Bun.sleep(100).then(() => "waiting")])).toBe("waiting");

  // Past the bound: refused at once, through a Request and through the parsed head.
  const started = performance.now();
  const refused = await post(over1!, ["over-1"]);
  expect(refused.status).toBe(503);
  expect(refused.headers.get("retry-after")).toBe(String(STORE_RETRY_AFTER_S));
  expect(((await refused.json()) as { error: string }).error).toContain("waiting for the database");
  const viaHead = loopOf(true);
  const viaRequest = loopOf(false);
  const a = await exchange(viaHead.loop, over2!.peer, JSON.stringify([anEvent("over-2")]));
  const b = await exchange(viaRequest.loop, over2!.peer, JSON.stringify([anEvent("over-2")]));
  expect(viaHead.seen.head).toBe(1);
  expect(a.startsWith("HTTP/1.1 503 ")).toBe(true);
  expect(a).toContain(`\r\nretry-after: ${STORE_RETRY_AFTER_S}\r\n`);
  expect(a).toBe(b);
  expect(performance.now() - started).toBeLessThan(1000); // long before the watchdog ends the stall
  expect(t.gw.metrics.requests("/events", 503)).toBe(3);

  // The watchdog ends the hung commit: its own call is answered 503 (never committed, the device
  // retries it), and every call queued behind it is stored.
  const first = await hung;
  expect(first.status).toBe(503);
  expect(first.headers.get("retry-after")).toBe(String(STORE_RETRY_AFTER_S));
  for (const res of await Promise.all(answers)) expect(await res.json()).toEqual({ received: 2, stored: 2 });
  // The devices send again what was refused.
  expect(await (await post(hungDevice!, ["hung-1"])).json()).toEqual({ received: 1, stored: 1 });
  expect(await (await post(over1!, ["over-1"])).json()).toEqual({ received: 1, stored: 1 });
  expect(await (await post(over2!, ["over-2"])).json()).toEqual({ received: 1, stored: 1 });
  const stored = (await Promise.all(devices.map((d) => t.gw.store.listEvents(d.uuid)))).flat().map((e) => e.id);
  expect(stored.sort()).toEqual(["hung-1", "over-1", "over-2", ...queued.flatMap((q) => q.ids)].sort());
}, 20_000);
