import { describe, expect, test } from "bun:test";
import { deriveKey, openBytes, sealBytes } from "./aead.ts";

describe("aead", () => {
  const key = deriveKey("a secret", "purpose one");

  test("opens what it sealed, with the same aad", () => {
    const sealed = sealBytes(key, "hello", "id-1");
    expect(openBytes(key, sealed, "id-1").toString()).toBe("hello");
    expect(sealed.includes(Buffer.from("hello"))).toBe(false);
  });

  test("refuses another purpose's key, another aad, a changed byte, a short value", () => {
    const sealed = sealBytes(key, "hello", "id-1");
    expect(() => openBytes(deriveKey("a secret", "purpose two"), sealed, "id-1")).toThrow();
    expect(() => openBytes(key, sealed, "id-2")).toThrow();
    const bent = Buffer.from(sealed);
    bent[14]! ^= 1;
    expect(() => openBytes(key, bent, "id-1")).toThrow();
    expect(() => openBytes(key, sealed.subarray(0, 20), "id-1")).toThrow();
  });

  test("two seals of one value differ (random nonce)", () => {
    expect(sealBytes(key, "x").equals(sealBytes(key, "x"))).toBe(false);
  });
});
