import { describe, expect, test } from "bun:test";
import { JsonBodyError, jsonDepth, parseJsonBytes, readJsonBody } from "./json-body.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const statusOf = (f: () => unknown) => {
  try {
    f();
    return 0;
  } catch (e) {
    return (e as JsonBodyError).status;
  }
};

describe("JSON body reader", () => {
  test("counts nesting outside strings only", () => {
    expect(jsonDepth(enc('{"a":[1,{"b":"[[[{{{"}]}'), 32)).toBe(3);
    expect(jsonDepth(enc('"\\"[[["'), 32)).toBe(0);
    expect(jsonDepth(enc("1"), 32)).toBe(0);
  });

  test("refuses 100,000-deep JSON within milliseconds, before parsing", () => {
    const deep = enc("[".repeat(100_000) + "]".repeat(100_000));
    const t0 = performance.now();
    expect(() => parseJsonBytes(deep)).toThrow("nested deeper than 32 levels");
    // The scan stops at the 33rd level (microseconds); 100 ms leaves room for a machine busy with other tests.
    expect(performance.now() - t0).toBeLessThan(100);
    const objects = enc('{"a":'.repeat(100_000) + "1" + "}".repeat(100_000));
    expect(statusOf(() => parseJsonBytes(objects))).toBe(400);
  });

  test("accepts exactly the depth limit, refuses one more", () => {
    expect(parseJsonBytes(enc("[".repeat(32) + "]".repeat(32)), { maxDepth: 32 })).toBeArray();
    expect(statusOf(() => parseJsonBytes(enc("[".repeat(33) + "]".repeat(33)), { maxDepth: 32 }))).toBe(400);
  });

  test("too large is 413, malformed is 400 with the parser's reason", () => {
    expect(statusOf(() => parseJsonBytes(enc("[1,2,3]"), { maxBytes: 3 }))).toBe(413);
    expect(() => parseJsonBytes(enc("{nope"))).toThrow(/^Invalid JSON body: /);
  });

  test("readJsonBody stops reading past the limit, declared or not", async () => {
    const declared = new Request("https://x/", { method: "POST", body: "[1]", headers: { "content-length": "999999" } });
    await expect(readJsonBody(declared, { maxBytes: 10 })).rejects.toMatchObject({ status: 413 });
    let pulled = 0;
    const endless = new ReadableStream<Uint8Array>({
      pull(k) {
        pulled++;
        k.enqueue(new Uint8Array(1024).fill(0x20));
      },
    });
    const streamed = new Request("https://x/", { method: "POST", body: endless, duplex: "half" } as RequestInit);
    await expect(readJsonBody(streamed, { maxBytes: 10_000 })).rejects.toMatchObject({ status: 413 });
    expect(pulled).toBeLessThan(20);
    expect(await readJsonBody(new Request("https://x/", { method: "POST", body: '{"a":[1]}' }))).toEqual({ a: [1] });
  });
});
