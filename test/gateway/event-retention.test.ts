/**
 * Device events older than --keep-events are removed by the signer, so the database does not grow
 * for ever; newer ones, and everything else about a device, stay.
 */
import { afterAll, expect, test } from "bun:test";
import { join } from "node:path";
import { startGatewayServer, type RunningGateway } from "../../gateway/gateway.ts";
import { tempDir } from "../harness/tmp.ts";
import { post } from "./_client.ts";
import { anEvent } from "./_fixture.ts";
import { registerDevice } from "./_register.ts";

const MAIN = join(import.meta.dir, "..", "..", "gateway", "main.ts");
let gw: RunningGateway | undefined;
afterAll(async () => {
  await gw?.stop();
});

test("events received longer ago than --keep-events are removed by the signer, newer ones kept, and the log says how many", async () => {
  const logs: string[] = [];
  gw = await startGatewayServer({
    dataDir: join(await tempDir("retention-"), "data"),
    listen: "127.0.0.1:0",
    keepEvents: { ms: 3000, shown: "3s" },
    eventRetentionIntervalMs: 500,
    log: (l) => logs.push(l),
  });
  const d = await registerDevice(gw.url, gw.data.adminToken, gw.data.ca.certPem);
  const send = async (ids: string[]) => expect((await d.fetch(`${gw!.url}/events`, post(ids.map((id) => anEvent(id))))).status).toBe(200);
  await send(["old-1", "old-2", "old-3"]);
  await Bun.sleep(2000);
  await send(["new-1"]);
  // The old ones pass 3 s first; the retention runs every 500 ms.
  const t0 = Date.now();
  while (!logs.some((l) => l.startsWith("gateway: removed ")) && Date.now() - t0 < 10_000) await Bun.sleep(100);
  expect(logs.find((l) => l.startsWith("gateway: removed "))).toMatch(/^gateway: removed 3 events received before \d{4}-\d\d-\d\dT[\d:.]+Z \(--keep-events 3s\)$/);
  const left = (await gw.gw.store.listEvents(d.uuid)).map((e) => e.id);
  expect(left).toEqual(["new-1"]);
  expect((await gw.gw.store.getDevice(d.uuid))?.uuid).toBe(d.uuid);
}, 60_000);

test("--keep-events takes a duration or 'forever'; anything else is bad usage naming the flag", async () => {
  const p = Bun.spawn(["bun", MAIN, "serve", "--data", join(await tempDir("retention-"), "data"), "--keep-events", "3 months"], { stdout: "pipe", stderr: "pipe" });
  const [stderr, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
  expect(code).toBe(2);
  expect(stderr).toContain(`--keep-events "3 months": expected a number with an optional unit s, m, h, d or w (e.g. 30d), or "forever"`);
}, 60_000);
