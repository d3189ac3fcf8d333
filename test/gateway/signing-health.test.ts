/**
 * The signer that cannot re-sign: with the timestamp key gone from the data dir, `gateway serve`
 * still serves devices, but the timestamp it holds expires and every device then refuses it. That
 * used to be one log line per check and nothing else. Now /healthz warns with the reason (still
 * 200: a load balancer keeps the replica, which serves devices), /metrics has
 * gateway_tuf_resign_failing 1, the log says it once (not at every retry), and all clear by
 * themselves once the key is back.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { rename } from "node:fs/promises";
import { join } from "node:path";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { tempDir, until } from "../harness/tmp.ts";

let gw: GatewayHandle;
beforeAll(async () => {
  // A 4 s timestamp is re-signed every second or so: each check of the refresh timer comes soon.
  gw = await startGateway({ args: ["--tuf-expiry", "timestamp=4s"] });
});
afterAll(async () => {
  await gw?.stop();
});

const health = async () => {
  const res = await fetch(`${gw.url}/healthz`, { tls: { ca: gw.caPem } } as RequestInit);
  return { status: res.status, body: (await res.json()) as { ok: boolean; warnings?: string[] } };
};
const timestampVersion = async () => (JSON.parse(await (await gw.adminFetch("/repo/timestamp.json")).text()) as { signed: { version: number } }).signed.version;
const failingGauge = async () => /^gateway_tuf_resign_failing (\d)$/m.exec(await (await gw.adminFetch("/metrics")).text())?.[1];
const log = () => readFileSync(gw.logFile, "utf8");

test("a timestamp key gone: /healthz warns with the reason, /metrics says it, the log once; the key back: all clear and re-signing goes on", async () => {
  expect(await health()).toEqual({ status: 200, body: { ok: true } });
  expect(await failingGauge()).toBe("0");
  const keyFile = join(gw.dataDir, "tuf", "keys", "timestamp.json");
  const away = join(await tempDir("key-away-"), "timestamp.json");
  await rename(keyFile, away);

  const down = await until("/healthz to warn", health, (h) => h.body.warnings !== undefined, 15_000);
  expect(down.status).toBe(200); // the replica still serves devices
  expect(down.body.ok).toBe(true);
  expect(down.body.warnings).toHaveLength(1);
  expect(down.body.warnings![0]).toStartWith("Cannot re-sign the TUF metadata since ");
  expect(down.body.warnings![0]).toContain("Cannot sign TUF timestamp metadata with ");
  expect(await failingGauge()).toBe("1");
  // Still failing a few checks later (each about a second apart): the log said it once.
  const stuck = await timestampVersion();
  await Bun.sleep(3000);
  expect((await health()).body.warnings).toHaveLength(1);
  expect(await timestampVersion()).toBe(stuck);
  expect(log().match(/cannot refresh TUF metadata: Cannot sign TUF timestamp/g)?.length).toBe(1);
  expect(log()).toContain("/healthz warns and /metrics has gateway_tuf_resign_failing 1 until it is re-signed");

  await rename(away, keyFile);
  await until("/healthz without a warning", health, (h) => h.status === 200 && h.body.warnings === undefined, 15_000);
  expect(await failingGauge()).toBe("0");
  expect(log()).toMatch(/TUF metadata re-signed again, after failing for \d+ s/);
  await until("a newer timestamp", timestampVersion, (v) => v > stuck, 10_000);
}, 60_000);
