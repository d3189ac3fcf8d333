/**
 * The HTTP/1.1-over-TLS transport seen from the wire: keep-alive, pipelining, HEAD,
 * 100-continue, chunked bodies both ways, malformed requests, the verified client
 * certificate reaching the handler; deadlines, connection caps and the admission hook.
 */
import { afterAll, beforeAll, describe, expect, setSystemTime, test } from "bun:test";
import { connect } from "node:tls";
import { createCa, issueServerCert, signDeviceCsr } from "../pki/ca.ts";
import { normalizeSerial } from "../pki/keys.ts";
import { type Listening, listen } from "./index.ts";
import { makeDeviceCsr } from "../../test/gateway/_device.ts";

let server: Listening;
let caPem: string;
let device: { cert: string; key: string; uuid: string; serial: string };

beforeAll(async () => {
  const ca = await createCa("main");
  caPem = ca.certPem;
  const tls = await issueServerCert(ca, ["127.0.0.1"]);
  const k = await makeDeviceCsr();
  const issued = await signDeviceCsr(ca, k.csrPem, { uuid: k.uuid, factory: "main" });
  device = { cert: issued.certPem, key: k.keyPem, uuid: k.uuid, serial: normalizeSerial(issued.serial) };
  server = await listen({
    host: "127.0.0.1",
    port: 0,
    cert: tls.certPem,
    key: tls.keyPem,
    clientCa: ca.certPem,
    async fetch(req, env) {
      const url = new URL(req.url);
      if (url.pathname === "/echo") {
        const body = new Uint8Array(await req.arrayBuffer());
        return new Response(body, { headers: { "x-method": req.method, "x-length": String(body.byteLength) } });
      }
      if (url.pathname === "/whoami") return Response.json({ peer: env.peer ?? null });
      if (url.pathname === "/stream") {
        let i = 0;
        return new Response(
          new ReadableStream({
            pull(ctrl) {
              if (i++ < 3) ctrl.enqueue(new TextEncoder().encode(`part${i};`));
              else ctrl.close();
            },
          }),
        );
      }
      if (url.pathname === "/sized") return new Response("0123456789", { headers: { "content-length": "10" } });
      if (url.pathname === "/fail") throw new Error("handler broke");
      if (url.pathname === "/deny") return Response.json({ error: "no" }, { status: 401 });
      return new Response("not found", { status: 404 });
    },
  });
});

afterAll(async () => {
  await server?.close(1000);
});

/** Sends raw bytes over one TLS connection and collects everything until the server closes or `until` matches. */
async function raw(parts: (string | Uint8Array)[], opts: { until?: RegExp; cert?: boolean; delayMs?: number } = {}): Promise<string> {
  return await new Promise((resolve, reject) => {
    const sock = connect({
      host: "127.0.0.1",
      port: server.port,
      ca: caPem,
      ...(opts.cert ? { cert: device.cert, key: device.key } : {}),
    });
    let text = "";
    const done = () => {
      sock.destroy();
      resolve(text);
    };
    sock.on("data", (d: Buffer) => {
      text += d.toString("latin1");
      if (opts.until?.test(text)) done();
    });
    sock.on("end", done);
    sock.on("close", done);
    sock.on("error", reject);
    sock.on("secureConnect", async () => {
      for (const p of parts) {
        sock.write(p);
        if (opts.delayMs) await Bun.sleep(opts.delayMs);
      }
    });
    setTimeout(done, 5000);
  });
}

describe("HTTP/1.1 transport", () => {
  test("keep-alive and pipelined requests are answered in order on one connection", async () => {
    const text = await raw(
      [
        "GET /sized HTTP/1.1\r\nHost: x\r\n\r\n" +
          "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
          "GET /missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      ],
      {},
    );
    const statuses = [...text.matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => m[1]);
    expect(statuses).toEqual(["200", "200", "404"]);
    expect(text).toContain("0123456789");
    expect(text).toContain("x-method: POST");
    expect(text).toMatch(/\r\n\r\nhello/);
    expect(text).toMatch(/connection: close/i);
  });

  test("HEAD answers headers only; a streamed answer without a length is chunked", async () => {
    const head = await raw(["HEAD /sized HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]);
    expect(head).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(head).toMatch(/content-length: 10\r\n/);
    expect(head.endsWith("\r\n\r\n")).toBe(true);
    const res = await fetch(`${server.url}/stream`, { tls: { ca: caPem } } as RequestInit);
    expect(await res.text()).toBe("part1;part2;part3;");
    const wire = await raw(["GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]);
    expect(wire).toMatch(/transfer-encoding: chunked/);
    expect(wire).toContain("6\r\npart1;\r\n");
    expect(wire.endsWith("0\r\n\r\n")).toBe(true);
  });

  test("chunked request bodies, split anywhere, and 100-continue", async () => {
    const text = await raw(
      ["POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n", "3\r\nab", "c\r\n4;ext=1\r\ndefg\r\n0\r", "\n\r\n"],
      { delayMs: 20, until: /abcdefg/ },
    );
    expect(text).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n/);
    expect(text).toContain("x-length: 7");
    expect(text).toContain("abcdefg");
  });

  test("a large body sent by fetch arrives whole", async () => {
    const big = new Uint8Array(3_000_000).map((_, i) => i & 255);
    const res = await fetch(`${server.url}/echo`, { method: "PUT", body: big, tls: { ca: caPem } } as RequestInit);
    const back = new Uint8Array(await res.arrayBuffer());
    expect(back.byteLength).toBe(big.byteLength);
    expect(Buffer.compare(back, big)).toBe(0);
  });

  test("malformed requests get 400 and the connection closes; a failing handler gets 500", async () => {
    expect(await raw(["BLAH\r\n\r\n"])).toMatch(/^HTTP\/1\.1 400 /);
    expect(await raw(["POST /echo HTTP/1.1\r\nContent-Length: nope\r\n\r\n"])).toMatch(/^HTTP\/1\.1 400 /);
    expect(await raw(["GET / HTTP/2.0\r\n\r\n"])).toMatch(/^HTTP\/1\.1 505 /);
    expect(await raw([`GET / HTTP/1.1\r\nX: ${"a".repeat(70_000)}\r\n\r\n`])).toMatch(/^HTTP\/1\.1 431 /);
    const res = await fetch(`${server.url}/fail`, { tls: { ca: caPem } } as RequestInit);
    expect(res.status).toBe(500);
  });

  // Request smuggling: a proxy in front that frames the body otherwise would take the rest for another request.
  test("an ambiguously framed request is refused and the connection closes: the request pipelined after it is not answered", async () => {
    const next = "GET /sized HTTP/1.1\r\nHost: x\r\n\r\n";
    const cases: [string, string][] = [
      ["400", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
      ["400", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n"],
      ["501", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"],
      ["400", "POST /echo HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
      ["400", "GET /x/%2e%2e/sized HTTP/1.1\r\nHost: x\r\n\r\n"],
    ];
    for (const [status, request] of cases) {
      const started = Date.now();
      const text = await raw([request + next]);
      expect([...text.matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => m[1]), request).toEqual([status]);
      expect(text).toMatch(/connection: close\r\n/);
      expect(Date.now() - started).toBeLessThan(4000); // closed by the server, not by raw's 5 s wait
    }
  });

  test("an upload refused before its body is read is answered, and the connection closes", async () => {
    const text = await raw(["POST /deny HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n", new Uint8Array(200_000)]);
    expect(text).toMatch(/^HTTP\/1\.1 401 Unauthorized\r\n/);
    expect(text).toMatch(/connection: close\r\n/);
    // and the server still serves others
    const res = await fetch(`${server.url}/sized`, { tls: { ca: caPem } } as RequestInit);
    expect(await res.text()).toBe("0123456789");
  });

  test("the handler sees the verified client certificate, and nothing without one", async () => {
    const withCert = await fetch(`${server.url}/whoami`, { tls: { ca: caPem, cert: device.cert, key: device.key } } as RequestInit);
    expect(await withCert.json()).toEqual({ peer: { cn: device.uuid, serial: device.serial } });
    const without = await fetch(`${server.url}/whoami`, { tls: { ca: caPem } } as RequestInit);
    expect(await without.json()).toEqual({ peer: null });
  });
});

describe("deadlines, caps and admission", () => {
  let tight: Listening;
  let bodiesRead = 0;
  beforeAll(async () => {
    const ca = await createCa("main");
    const tls = await issueServerCert(ca, ["127.0.0.1"]);
    tight = await listen({
      host: "127.0.0.1",
      port: 0,
      cert: tls.certPem,
      key: tls.keyPem,
      clientCa: caPem,
      limits: { headTimeoutMs: 400, bodyTimeoutMs: 800, idleTimeoutMs: 5000, maxConnections: 1000, maxConnectionsPerAddress: 20 },
      admit: (req, env) => ({
        authenticated: env.peer !== undefined || req.header("authorization") === "Bearer good",
        refuse: req.path === "/private" && !env.peer,
      }),
      async fetch(req) {
        if (new URL(req.url).pathname === "/private") return Response.json({ error: "no certificate" }, { status: 401 });
        if (new URL(req.url).pathname === "/big") return new Response(new Uint8Array(32 << 20));
        const body = await req.arrayBuffer();
        bodiesRead++;
        return new Response(`read ${body.byteLength}`);
      },
    });
    caPem2 = ca.certPem;
  });
  afterAll(async () => {
    await tight?.close(500);
  });
  let caPem2 = "";

  /** Opens a connection to `tight`, writes `parts` `gapMs` apart; resolves with what came back and when it closed. */
  const slow = (parts: string[], gapMs: number, cert = false) =>
    new Promise<{ text: string; ms: number }>((resolve) => {
      const t0 = performance.now();
      const sock = connect({ host: "127.0.0.1", port: tight.port, ca: caPem2, ...(cert ? { cert: device.cert, key: device.key } : {}) });
      let text = "";
      let timer: Timer | undefined;
      sock.on("secureConnect", () => {
        let i = 0;
        const step = () => {
          if (i < parts.length && !sock.destroyed) sock.write(parts[i++]!);
          timer = setTimeout(step, gapMs);
        };
        step();
      });
      sock.on("data", (d: Buffer) => (text += d.toString("latin1")));
      sock.on("error", () => {});
      sock.on("close", () => {
        clearTimeout(timer);
        resolve({ text, ms: performance.now() - t0 });
      });
      setTimeout(() => sock.destroy(), 5000);
    });

  test("a head sent one byte at a time is cut at the head deadline with 408", async () => {
    const r = await slow("GET / HTTP/1.1\r\nHost: x\r\n\r\n".split(""), 100);
    expect(r.text).toMatch(/^HTTP\/1\.1 408 /);
    expect(r.ms).toBeGreaterThan(350);
    expect(r.ms).toBeLessThan(1500);
  });

  test("a connection that sends nothing is closed at the head deadline", async () => {
    const r = await slow([], 1000);
    expect(r.text).toBe("");
    expect(r.ms).toBeLessThan(1500);
  });

  test("deadlines keep their length when the wall clock steps, back or forward, under open connections", async () => {
    const stepped = async (ms: number, client: Promise<{ text: string; ms: number }>) => {
      await Bun.sleep(150);
      setSystemTime(new Date(Date.now() + ms));
      try {
        return await client;
      } finally {
        setSystemTime();
      }
    };
    // Back an hour: a connection that sends nothing is still closed at its head deadline (not an hour later).
    const back = await stepped(-3_600_000, slow([], 1000));
    expect(back.ms).toBeGreaterThan(350);
    expect(back.ms).toBeLessThan(1500);
    // Forward an hour: a client with a certificate sending its head slowly, within its idle deadline, is not cut at once.
    const forward = await stepped(3_600_000, slow(["GET / HTTP/1.1\r\n", "Host: x\r\n", "Connection: close\r\n", "\r\n"], 300, true));
    expect(forward.text).toMatch(/^HTTP\/1\.1 200 /);
  });

  test("an unauthenticated body must be complete by the body deadline, however steadily it trickles", async () => {
    const r = await slow(["POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", ...Array(100).fill("a")], 50);
    expect(r.text).toMatch(/^HTTP\/1\.1 408 /);
    expect(r.text).toContain("request body was not complete");
    expect(r.ms).toBeLessThan(2000);
  });

  test("an authenticated client (token) may send a slow body, as long as it does not stall", async () => {
    const r = await slow(["POST /up HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer good\r\nConnection: close\r\nContent-Length: 20\r\n\r\n", ...Array(20).fill("a")], 70);
    expect(r.text).toMatch(/^HTTP\/1\.1 200 /);
    expect(r.text).toContain("read 20");
  });

  test("a client that pipelines past the head limit and stops reading a large answer is cut at the stall deadline", async () => {
    // Reading from it is paused while its answer goes out (the pipelined bytes wait their turn),
    // and that pause is ours: but the answer not moving is the client's, and the connection goes.
    const t0 = performance.now();
    const closedAfter = await new Promise<number>((resolve) => {
      const sock = connect({ host: "127.0.0.1", port: tight.port, ca: caPem2 });
      sock.on("secureConnect", () => {
        sock.pause(); // never reads the answer
        sock.write("GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
        // Pipelined while the answer goes out: past the head limit, reading from it pauses.
        setTimeout(() => sock.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(3000)), 100);
      });
      sock.on("error", () => {});
      sock.on("close", () => resolve(performance.now() - t0));
      setTimeout(() => {
        sock.destroy();
      }, 8000);
    });
    expect(closedAfter).toBeLessThan(5000); // the stall deadline is 0.8 s here; 8 s: never cut
  }, 15_000);

  test("a client with a verified certificate gets the idle deadline for its head", async () => {
    const r = await slow(["GET / HTTP/1.1\r\n", "Host: x\r\n", "Connection: close\r\n", "\r\n"], 300, true);
    expect(r.text).toMatch(/^HTTP\/1\.1 200 /);
  });

  test("a refused request is answered before its body is read, and the connection closes", async () => {
    const before = bodiesRead;
    const r = await slow(["POST /private HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n"], 10_000);
    expect(r.text).toMatch(/^HTTP\/1\.1 401 /); // no 100 Continue first: the body is not wanted
    expect(r.text).toMatch(/connection: close/);
    expect(r.ms).toBeLessThan(1000);
    expect(bodiesRead).toBe(before);
  });

  test("a refused request without a body keeps the connection: the pipelined request after it is answered", async () => {
    const r = await slow(["GET /private HTTP/1.1\r\nHost: x\r\n\r\nGET /open HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"], 10_000);
    expect([...r.text.matchAll(/HTTP\/1\.1 (\d+)/g)].map((m) => m[1])).toEqual(["401", "200"]);
  });

  test("past the per-address cap the oldest unauthenticated connection is closed; a certificate holder still gets in", async () => {
    const held = Array.from({ length: 30 }, () => slow(["G"], 10_000));
    await Bun.sleep(150);
    const served = await slow(["GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"], 10_000, true);
    expect(served.text).toMatch(/^HTTP\/1\.1 200 /);
    const results = await Promise.all(held);
    const early = results.filter((r) => r.ms < 300).length; // evicted at once, not at the head deadline
    expect(early).toBeGreaterThanOrEqual(10);
    expect(tight.stats().capped).toBeGreaterThanOrEqual(10);
  });
});
