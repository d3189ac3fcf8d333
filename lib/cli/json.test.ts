import { describe, expect, test } from "bun:test";
import { boundedJson, compactJson, TRUNCATED } from "./json.ts";

describe("compactJson", () => {
  test("prints one line and cuts data nested deeper than the limit", () => {
    expect(compactJson({ a: [1, { b: 2 }] })).toBe('{"a":[1,{"b":2}]}');
    expect(boundedJson({ a: { b: { c: 1 } } }, 2)).toEqual({ a: { b: TRUNCATED } });
  });

  test("a 40,000-deep value prints fast and small", () => {
    const deep = JSON.parse("[".repeat(40_000) + "]".repeat(40_000));
    const t0 = performance.now();
    const out = compactJson({ systemInfo: { hardware: deep } });
    expect(performance.now() - t0).toBeLessThan(200);
    expect(out.length).toBeLessThan(1000);
    expect(out).toContain(TRUNCATED);
  });
});
