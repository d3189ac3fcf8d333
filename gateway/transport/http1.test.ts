import { describe, expect, test } from "bun:test";
import { BadRequestError, BodyDecoder, parseHead } from "./http1.ts";

describe("parseHead", () => {
  /** The status parseHead refuses a head with, 0 if it takes it. */
  const status = (text: string) => {
    try {
      parseHead(text);
      return 0;
    } catch (e) {
      return (e as BadRequestError).status;
    }
  };

  test("reads method, target, headers, framing and keep-alive", () => {
    const h = parseHead("POST /v2/a/blobs/uploads/?x=1 HTTP/1.1\r\nHost: gw:8443\r\nContent-Length: 12\r\nExpect: 100-continue\r\nX-A: b ");
    expect(h).toMatchObject({ method: "POST", target: "/v2/a/blobs/uploads/?x=1", minor: 1, host: "gw:8443", contentLength: 12, chunked: false, keepAlive: true, expectContinue: true });
    expect(h.headers).toContainEqual(["X-A", "b"]);
    expect(parseHead("GET / HTTP/1.0\r\nHost: x").keepAlive).toBe(false);
    expect(parseHead("GET / HTTP/1.0\r\nConnection: Keep-Alive").keepAlive).toBe(true);
    expect(parseHead("GET / HTTP/1.1\r\nConnection: close").keepAlive).toBe(false);
    const te = parseHead("PUT / HTTP/1.1\r\nTransfer-Encoding: Chunked");
    expect(te.chunked).toBe(true);
    expect(te.contentLength).toBeUndefined();
  });

  test("refuses malformed heads with the status to answer", () => {
    expect(status("GET /")).toBe(400);
    expect(status("GET / HTTP/2.0")).toBe(505);
    expect(status("GET / HTTP/1.1\r\nno colon")).toBe(400);
    expect(status("GET / HTTP/1.1\r\nContent-Length: -1")).toBe(400);
    expect(status("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2")).toBe(400);
    expect(status("GET / HTTP/1.1\r\nTransfer-Encoding: gzip")).toBe(501);
    expect(status("GET / HTTP/1.1\r\nHost: a\r\nHost: b")).toBe(400);
    expect(status("GET / HTTP/1.1\r\nHost: gw/admin")).toBe(400); // the web Request's URL would move the path
  });

  // Request smuggling: a proxy in front may frame the body by the other reading.
  test("refuses ambiguous body framing: the connection answers and closes", () => {
    // Content-Length and chunked together (RFC 9112 §6.3), either order.
    expect(status("PUT / HTTP/1.1\r\nContent-Length: 40\r\nTransfer-Encoding: chunked")).toBe(400);
    expect(status("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 0")).toBe(400);
    // A coding other than chunked alone is not decoded (RFC 9112 §6.1: 501), nor chunked twice.
    expect(status("PUT / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked")).toBe(501);
    expect(status("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked")).toBe(501);
    expect(status("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked")).toBe(400);
    // Transfer-Encoding in HTTP/1.0 is faulty framing (RFC 9112 §6.1).
    expect(status("PUT / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked")).toBe(400);
    // A bare LF or CR in a head line, a name that is not a token (a space before the colon, a folded line).
    expect(status("PUT / HTTP/1.1\r\nX: a\nTransfer-Encoding: chunked")).toBe(400);
    expect(status("PUT / HTTP/1.1\r\nX: a\rContent-Length: 5")).toBe(400);
    expect(status("PUT / HTTP/1.1\r\nTransfer-Encoding : chunked")).toBe(400);
    expect(status("PUT / HTTP/1.1\r\nX: a\r\n Transfer-Encoding: chunked")).toBe(400);
    expect(status("GET /\n HTTP/1.1")).toBe(400);
  });

  test("the target is read as the app's router reads it: dot-segments refused, unreserved escapes decoded", () => {
    expect(() => parseHead("GET /repo/%2e%2e/ca.pem HTTP/1.1\r\nHost: x")).toThrow(BadRequestError);
    expect(() => parseHead("GET /repo/../ca.pem HTTP/1.1\r\nHost: x")).toThrow(BadRequestError);
    expect(parseHead("GET /%72epo/wait?after=1 HTTP/1.1\r\nHost: x").target).toBe("/repo/wait?after=1");
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

  test("a chunked line ends in CRLF: a bare LF (or a CR inside) is a BadRequestError", () => {
    expect(() => decodeAll({ chunked: true }, [enc("3\nabc\r\n0\r\n\r\n")])).toThrow(BadRequestError); // size line
    expect(() => decodeAll({ chunked: true }, [enc("3\r\nabc\n0\r\n\r\n")])).toThrow(BadRequestError); // after the data
    expect(() => decodeAll({ chunked: true }, [enc("0\r\n\n")])).toThrow(BadRequestError); // the last line
    expect(() => decodeAll({ chunked: true }, [enc("0\r\nX: 1\n\r\n")])).toThrow(BadRequestError); // a trailer
    expect(() => decodeAll({ chunked: true }, [enc("3;a\rb\r\nabc\r\n0\r\n\r\n")])).toThrow(BadRequestError); // a CR in an extension
    // Split between CR and LF is fine.
    expect(decodeAll({ chunked: true }, [enc("3\r"), enc("\nabc\r"), enc("\n0\r\n\r"), enc("\nNEXT")])).toEqual({ body: "abc", done: true, after: "NEXT" });
  });
});
