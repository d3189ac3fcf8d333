/**
 * The request loop's head handler (TransportOptions.fetchHead): an answer it gives is written as
 * is, a request it declines goes to `fetch`, and an error it throws is answered as `fetch`'s
 * would be (500, the connection kept), not as a bad request.
 */
import { expect, test } from "bun:test";
import type { HeadRequest } from "./options.ts";
import { exchange as exchangeOn, testLoop } from "./_test-loop.ts";

const loop = testLoop({
  fetch: () => new Response("from fetch", { headers: { "content-length": "10" } }),
  fetchHead: (req: HeadRequest) => {
    if (req.path === "/boom") throw new Error("handler bug");
    if (req.path === "/head") return { status: 200, head: "content-type: text/plain\r\n", body: Buffer.from("from head") };
    return undefined;
  },
});

const exchange = (target: string) => exchangeOn(loop, `GET ${target} HTTP/1.1\r\nhost: gw.test\r\n\r\n`);

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
