import { describe, expect, test } from "bun:test";
import { BadRequestError, BodyDecoder, parseHead } from "./http1.ts";

describe("parseHead", () => {
  test("reads method, target, headers, framing and keep-alive", () => {
    const h = parseHead("POST /v2/a/blobs/uploads/?x=1 HTTP/1.1\r\nHost: gw:8443\r\nContent-Length: 12\r\nExpect: 100-continue\r\nX-A: b ");
    expect(h).toMatchObject({ method: "POST", target: "/v2/a/blobs/uploads/?x=1", minor: 1, host: "gw:8443", contentLength: 12, chunked: false, keepAlive: true, expectContinue: true });
    expect(h.headers).toContainEqual(["X-A", "b"]);
    expect(parseHead("GET / HTTP/1.0\r\nHost: x").keepAlive).toBe(false);
    expect(parseHead("GET / HTTP/1.0\r\nConnection: Keep-Alive").keepAlive).toBe(true);
    expect(parseHead("GET / HTTP/1.1\r\nConnection: close").keepAlive).toBe(false);
    // chunked wins over a Content-Length
    const te = parseHead("PUT / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked");
    expect(te.chunked).toBe(true);
    expect(te.contentLength).toBeUndefined();
  });

  test("refuses malformed heads with the status to answer", () => {
    const status = (text: string) => {
      try {
        parseHead(text);
        return 0;
      } catch (e) {
        return (e as BadRequestError).status;
      }
    };
    expect(status("GET /")).toBe(400);
    expect(status("GET / HTTP/2.0")).toBe(505);
    expect(status("GET / HTTP/1.1\r\nno colon")).toBe(400);
    expect(status("GET / HTTP/1.1\r\nContent-Length: -1")).toBe(400);
    expect(status("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2")).toBe(400);
    expect(status("GET / HTTP/1.1\r\nTransfer-Encoding: gzip")).toBe(501);
  });
});

describe("BodyDecoder", () => {
  const decodeAll = (head: { contentLength?: number; chunked: boolean }, pieces: Uint8Array[]) => {
    const got: number[] = [];
    const d = new BodyDecoder(head, (c) => got.push(...c));
    let after: Uint8Array | undefined;
    for (const p of pieces) after = d.feed(p);
    return { body: new TextDecoder().decode(new Uint8Array(got)), done: d.done, after: after && new TextDecoder().decode(after) };
  };
  const enc = (s: string) => new TextEncoder().encode(s);

  test("Content-Length: stops at the length and returns what follows", () => {
    expect(decodeAll({ contentLength: 5, chunked: false }, [enc("he"), enc("lloGET /")])).toEqual({ body: "hello", done: true, after: "GET /" });
  });

  test("chunked, fed one byte at a time, with extensions and trailers", () => {
    const wire = "4;a=b\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
    const bytes = enc(wire);
    const pieces = Array.from(bytes, (b) => new Uint8Array([b]));
    const got: number[] = [];
    const d = new BodyDecoder({ chunked: true }, (c) => got.push(...c));
    let rest = "";
    for (const p of pieces) {
      const after = d.feed(p);
      if (after) rest += new TextDecoder().decode(after);
    }
    expect(new TextDecoder().decode(new Uint8Array(got))).toBe("Wikipedia in\r\n\r\nchunks.");
    expect(d.done).toBe(true);
    expect(rest).toBe("NEXT");
  });

  test("bad chunk framing is a BadRequestError", () => {
    expect(() => decodeAll({ chunked: true }, [enc("zz\r\n")])).toThrow(BadRequestError);
    expect(() => decodeAll({ chunked: true }, [enc("2\r\nabX\r\n")])).toThrow(BadRequestError);
  });
});
