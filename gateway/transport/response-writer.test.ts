import { describe, expect, test } from "bun:test";
import { FakeSocket } from "./_fake-socket.ts";
import { Connection } from "./connection.ts";
import { parseHead } from "./http1.ts";
import { writeResponse } from "./response-writer.ts";

const get = parseHead("GET / HTTP/1.1\r\nHost: x");

describe("writeResponse", () => {
  test("a small answer is one write with its length; keep-alive unless the connection must close", async () => {
    const sock = new FakeSocket();
    const c = new Connection(sock, "127.0.0.1");
    expect(await writeResponse(c, new Response("hello", { headers: { "x-a": "1" } }), get, true)).toBe(true);
    expect(sock.written).toHaveLength(1);
    expect(sock.text()).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(sock.text()).toMatch(/x-a: 1\r\n[^]*content-length: 5\r\n\r\nhello$/);
    const closing = new FakeSocket();
    expect(await writeResponse(new Connection(closing, ""), new Response("x"), get, false)).toBe(false);
    expect(closing.text()).toContain("connection: close\r\n");
  });

  test("a streamed answer without a length is chunked; bytes the socket refuses wait for drain, in order", async () => {
    const sock = new FakeSocket(7);
    const c = new Connection(sock, "127.0.0.1");
    const body = new ReadableStream<Uint8Array>({
      start(k) {
        k.enqueue(new TextEncoder().encode("abc"));
        k.enqueue(new TextEncoder().encode("defgh"));
        k.close();
      },
    });
    let settled = false;
    const done = writeResponse(c, new Response(body), get, true).finally(() => (settled = true));
    for (let i = 0; i < 200 && !(settled && c.out.length === 0); i++) {
      await Bun.sleep(1);
      c.flush(); // what the socket's drain event does
    }
    expect(await done).toBe(true);
    const text = sock.text();
    expect(text).toContain("transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n");
    expect(c.out).toHaveLength(0);
  });

  test("HEAD and 204 carry no body", async () => {
    const sock = new FakeSocket();
    await writeResponse(new Connection(sock, ""), new Response("0123456789", { headers: { "content-length": "10" } }), parseHead("HEAD / HTTP/1.1"), true);
    expect(sock.text()).toMatch(/content-length: 10\r\n\r\n$/);
    const s204 = new FakeSocket();
    await writeResponse(new Connection(s204, ""), new Response(null, { status: 204 }), get, true);
    expect(s204.text()).toMatch(/^HTTP\/1\.1 204 No Content\r\n/);
    expect(s204.text()).not.toContain("content-length");
  });
});
