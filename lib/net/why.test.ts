import { expect, test } from "bun:test";
import { once } from "node:events";
import { createServer, type AddressInfo } from "node:net";
import { netWhy, proxyWithoutBackend } from "./why.ts";

/** A loopback port nobody listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = createServer().listen(0, "127.0.0.1");
  await once(s, "listening");
  const port = (s.address() as AddressInfo).port;
  s.close();
  await once(s, "close");
  return port;
}

test("a refused connection and a server that never answers are said in words", async () => {
  const refused = await fetch(`http://127.0.0.1:${await closedPort()}/`).catch((e) => e);
  expect(netWhy(refused)).toBe("connection refused (is it running at that address?)");

  const silent = createServer(() => {}).listen(0, "127.0.0.1"); // accepts, never answers
  await once(silent, "listening");
  try {
    const late = await fetch(`http://127.0.0.1:${(silent.address() as AddressInfo).port}/`, { signal: AbortSignal.timeout(200) }).catch((e) => e);
    expect(netWhy(late)).toBe("no answer in time");
  } finally {
    silent.close();
  }
  expect(netWhy(new Error("certificate has expired"))).toBe("certificate has expired");
});

test("only a proxy's 502, 503 and 504 say no server is up behind it; the server's own 500 and 501 do not", () => {
  expect([500, 501, 502, 503, 504, 505].filter(proxyWithoutBackend)).toEqual([502, 503, 504]);
});
