/**
 * The request loop's head handler (TransportOptions.fetchHead): an answer it gives is written as
 * is, a request it declines goes to `fetch`, and an error it throws is answered as `fetch`'s
 * would be (500, the connection kept), not as a bad request.
 */
import { expect, test } from "bun:test";
import { Connection } from "./connection.ts";
import { FakeSocket } from "./_fake-socket.ts";
import { DEFAULT_LIMITS, type HeadRequest } from "./options.ts";
import { RequestLoop } from "./requests.ts";

const loop = new RequestLoop(
  {
    host: "gw.test",
    port: 8443,
    cert: "",
    key: "",
    clientCa: "",
    fetch: () => new Response("from fetch", { headers: { "content-length": "10" } }),
    fetchHead: (req: HeadRequest) => {
      if (req.path === "/boom") throw new Error("handler bug");
      if (req.path === "/head") return { status: 200, head: "content-type: text/plain\r\n", body: Buffer.from("from head") };
      return undefined;
    },
  },
  DEFAULT_LIMITS,
  { stopping: () => false, authenticated: () => {} },
);

async function exchange(target: string): Promise<{ text: string; ended: boolean }> {
  const sock = new FakeSocket();
  const c = new Connection(sock, "127.0.0.1");
  loop.onData(c, Buffer.from(`GET ${target} HTTP/1.1\r\nhost: gw.test\r\n\r\n`, "latin1"));
  for (const until = Date.now() + 20_000; c.busy && !c.ending && Date.now() < until; ) await Bun.sleep(1);
  return { text: sock.text(), ended: sock.ended || c.ending };
}

test("fetchHead: its answer, a declined request through fetch, and its error as a 500 on a kept connection", async () => {
  const head = await exchange("/head");
  expect(head.text).toStartWith("HTTP/1.1 200");
  expect(head.text).toEndWith("\r\n\r\nfrom head");
  const declined = await exchange("/other");
  expect(declined.text).toEndWith("\r\n\r\nfrom fetch");
  const errors: unknown[] = [];
  const log = console.error;
  console.error = (...a: unknown[]) => void errors.push(a);
  try {
    const boom = await exchange("/boom");
    expect(boom.text).toStartWith("HTTP/1.1 500");
    expect(boom.ended).toBe(false);
  } finally {
    console.error = log;
  }
  expect(String(errors.flat())).toContain("handler bug");
});
