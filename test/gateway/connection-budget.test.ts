/**
 * The TLS port and the plain listener for proxies (`--proxy-listen`) draw on one budget of open
 * files (gateway/transport/connection-caps.ts): the open-file limit less the files kept for the
 * database, logs and blobs being served. Each used to count that whole budget as its own, so a
 * proxy's connections plus the devices' could take more descriptors than the process has, and
 * then accept, SQLite and blob downloads all fail with EMFILE. Under `prlimit --nofile=1024` the
 * budget is 512: a trusted proxy holding the plain listener's share leaves the TLS port nothing,
 * so a new TLS connection is closed at accept (counted in /metrics) instead of taking a file the
 * reserve keeps; once the proxy lets go, the TLS port serves again.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { connect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { freePort } from "../harness/tmp.ts";

const REPO = join(import.meta.dir, "..", "..");
const PROXY = "127.0.0.2";
let gw: GatewayHandle;
let plainPort: number;
const held: Socket[] = [];

beforeAll(async () => {
  plainPort = await freePort();
  gw = await startGateway({
    command: ["prlimit", "--nofile=1024:1024", "--", process.execPath, join(REPO, "gateway/main.ts")],
    args: ["--trust-proxy", PROXY, "--proxy-listen", `127.0.0.1:${plainPort}`],
  });
});
afterAll(async () => {
  for (const s of held) s.destroy();
  await gw?.stop();
}, 30_000);

const metric = async (name: string) => Number(new RegExp(`^${name} (\\d+)$`, "m").exec(await (await gw.adminFetch("/metrics")).text())?.[1]);

/** Opens a TLS connection to the gateway's port; resolves once its handshake is done (null: closed or reset first). */
function tlsOpen(): Promise<{ open: () => boolean; close: () => void } | null> {
  const port = Number(new URL(gw.url).port);
  return new Promise((resolve) => {
    let closed = false;
    const s = tlsConnect({ host: "127.0.0.1", port, ca: gw.caPem, servername: "localhost", rejectUnauthorized: false }, () =>
      resolve({ open: () => !closed, close: () => s.destroy() }),
    );
    s.on("error", () => {});
    s.on("close", () => {
      closed = true;
      resolve(null);
    });
    setTimeout(() => (s.destroy(), resolve(null)), 5000);
  });
}

test("a proxy holding its listener's share of the open files leaves the TLS port no more: it keeps to what it can make room for, never past the limit; it serves as before once the proxy lets go", async () => {
  const budget = await metric("gateway_connections_max");
  expect(budget).toBe(512); // 1024 less the quarter (at least 512) kept for files

  // The proxy opens more kept-alive connections than the budget (its listener ends its longest idle ones past it).
  for (let i = 0; i < budget + 100; i++) {
    const s = connect({ host: "127.0.0.1", port: plainPort, localAddress: PROXY });
    s.on("error", () => {});
    held.push(s);
  }
  await Promise.all(held.map((s) => new Promise((r) => (s.readyState === "open" ? r(null) : s.once("connect", r).once("close", r)))));

  // 100 clients without a certificate then connect to the TLS port. Each new one can only take the
  // place of one of the TLS port's own (the newest unauthenticated goes): before the shared budget
  // all 100 stayed open, on 512 files counted as the TLS port's own besides the proxy's.
  const tls = (await Promise.all(Array.from({ length: 100 }, () => tlsOpen()))).filter((t) => t !== null);
  await Bun.sleep(500);
  const stillOpen = tls.filter((t) => t.open()).length;
  expect(stillOpen).toBeLessThanOrEqual(3);
  const files = readdirSync(`/proc/${gw.pid}/fd`).length;
  expect(files).toBeLessThan(1024 - 256); // the reserve stays free: the database, logs and blobs can still be opened
  for (const t of tls) t.close();

  for (const s of held.splice(0)) s.destroy();
  await Bun.sleep(500);
  const again = (await Promise.all(Array.from({ length: 20 }, () => tlsOpen()))).filter((t) => t !== null);
  await Bun.sleep(300);
  expect(again.filter((t) => t.open()).length).toBe(20);
  for (const t of again) t.close();
  expect(await metric("gateway_connections_capped_total")).toBeGreaterThanOrEqual(100 - 3);
}, 60_000);
