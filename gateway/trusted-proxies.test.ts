import { describe, expect, test } from "bun:test";
import { InvalidCidrError, TrustedProxies } from "./trusted-proxies.ts";

describe("TrustedProxies", () => {
  test("matches addresses inside the CIDRs only, including IPv4-mapped IPv6", () => {
    const t = new TrustedProxies("10.0.0.0/8, 127.0.0.1,::1/128");
    expect(t.has("10.1.2.3")).toBe(true);
    expect(t.has("::ffff:127.0.0.1")).toBe(true);
    expect(t.has("::1")).toBe(true);
    expect(t.has("11.0.0.1")).toBe(false);
    expect(t.has(undefined)).toBe(false);
    expect(new TrustedProxies(undefined).has("127.0.0.1")).toBe(false);
  });

  test("rejects malformed entries with a clear error", () => {
    for (const bad of ["10.0.0.0/33", "nonsense", "10.0.0.0/x", "::1/129"])
      expect(() => new TrustedProxies(bad)).toThrow(InvalidCidrError);
  });
});
