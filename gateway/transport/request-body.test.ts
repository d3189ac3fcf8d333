import { describe, expect, test } from "bun:test";
import { FakeSocket } from "./_fake-socket.ts";
import { Connection } from "./connection.ts";
import { parseHead } from "./http1.ts";
import { BODY_HIGH_WATER, startBody } from "./request-body.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const conn = () => new Connection(new FakeSocket(), "127.0.0.1");

describe("startBody", () => {
  test("a small body that came with the head is returned whole; the bytes after it wait for the next request", () => {
    const c = conn();
    const body = startBody(c, parseHead("POST /e HTTP/1.1\r\nContent-Length: 5"), enc("helloGET / HTTP/1.1\r\n"), true);
    expect(new TextDecoder().decode(body as Uint8Array)).toBe("hello");
    expect(c.buf?.toString()).toBe("GET / HTTP/1.1\r\n");
  });

  test("a small body still arriving resolves when its last byte is fed", async () => {
    const c = conn();
    const started = startBody(c, parseHead("POST /e HTTP/1.1\r\nContent-Length: 6"), enc("ab"), true);
    expect(started).toBeInstanceOf(Promise);
    c.body!.feed(enc("cdef"));
    c.bodyDone?.();
    expect(new TextDecoder().decode(await (started as Promise<Uint8Array>))).toBe("abcdef");
  });

  test("a chunked body is a stream; the socket pauses past the high-water mark until the handler reads", async () => {
    const c = conn();
    const stream = startBody(c, parseHead("PUT /blob HTTP/1.1\r\nTransfer-Encoding: chunked"), new Uint8Array(0), true) as ReadableStream<Uint8Array>;
    expect(stream).toBeInstanceOf(ReadableStream);
    const big = new Uint8Array(BODY_HIGH_WATER);
    c.body!.feed(enc(`${big.byteLength.toString(16)}\r\n`));
    c.body!.feed(big);
    expect(c.paused).toBe(true); // nobody read yet: stop reading the socket
    const reader = stream.getReader();
    const first = await reader.read();
    expect(first.value!.byteLength).toBe(BODY_HIGH_WATER);
    expect(c.paused).toBe(false);
    c.body!.feed(enc("\r\n0\r\n\r\n"));
    c.bodyDone?.();
    expect((await reader.read()).done).toBe(true);
  });

  test("Expect: 100-continue is answered when the body is wanted", () => {
    const c = conn();
    startBody(c, parseHead("PUT /x HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue"), new Uint8Array(0), true);
    expect((c.sock as FakeSocket).text()).toBe("HTTP/1.1 100 Continue\r\n\r\n");
  });
});
