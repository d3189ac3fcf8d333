/**
 * One device certificate holds at most MAX_PER_IDENTITY connections on a gateway: past that its
 * oldest is closed, though each is mid-request (a body sent a byte at a time), so one device
 * cannot take every connection from the fleet. Real TLS connections to a real gateway.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { connect, type TLSSocket } from "node:tls";
import { MAX_PER_IDENTITY } from "../../gateway/transport/connection-caps.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { until } from "../harness/tmp.ts";
import { registerDevice } from "./_register.ts";

let gw: GatewayHandle;
beforeAll(async () => {
  gw = await startGateway();
}, 60_000);
afterAll(async () => {
  await gw?.stop();
});

test("a device's connections past the cap close its oldest, each mid-request; another device still checks in", async () => {
  const [hog, other] = [await registerDevice(gw.url, gw.adminToken, gw.caPem), await registerDevice(gw.url, gw.adminToken, gw.caPem)];
  const socks: { sock: TLSSocket; closed: boolean }[] = [];
  try {
    for (let i = 0; i < MAX_PER_IDENTITY + 3; i++) {
      const entry = { sock: undefined as unknown as TLSSocket, closed: false };
      await new Promise<void>((resolve, reject) => {
        entry.sock = connect({ host: "127.0.0.1", port: gw.port, ca: gw.caPem, cert: hog.cert, key: hog.key }, () => {
          // A request whose body comes a byte at a time: the connection is busy, never idle.
          entry.sock.write("POST /events HTTP/1.1\r\nHost: gw\r\ncontent-type: application/json\r\ncontent-length: 65536\r\n\r\n[");
          resolve();
        });
        entry.sock.on("error", () => {});
        entry.sock.on("close", () => (entry.closed = true));
        entry.sock.once("error", reject);
      });
      socks.push(entry);
      await Bun.sleep(20); // in order: the gateway sees them oldest first
    }
    await until("the oldest three closed", () => socks.filter((s) => s.closed).length, (n) => n >= 3, 10_000);
    await Bun.sleep(300);
    expect(socks.map((s) => s.closed)).toEqual([true, true, true, ...Array(MAX_PER_IDENTITY).fill(false)]);
    expect((await other.fetch(`${gw.url}/repo/timestamp.json`)).status).toBe(200);
  } finally {
    for (const s of socks) s.sock.destroy();
  }
}, 60_000);
