import { describe, expect, test } from "bun:test";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { tempDir } from "../../test/harness/tmp.ts";
import { Digester, digestBlob, digestFile, isDigest, parseDigest, sha256, tryParseDigest } from "./digest.ts";

const EMPTY = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

describe("parseDigest", () => {
  test("accepts sha256 and sha512 with lowercase hex of the right length", () => {
    expect(parseDigest(EMPTY)).toEqual({ algorithm: "sha256", hex: EMPTY.slice(7), value: EMPTY });
    expect(parseDigest(`sha512:${"a".repeat(128)}`).algorithm).toBe("sha512");
  });
  test("rejects wrong length, uppercase, unknown algorithm and missing colon", () => {
    for (const bad of [`sha256:${"a".repeat(63)}`, `sha256:${"A".repeat(64)}`, `md5:${"a".repeat(32)}`, "a".repeat(64), "", "sha256:"]) {
      expect(tryParseDigest(bad)).toBeUndefined();
      expect(() => parseDigest(bad)).toThrow(SyntaxError);
      expect(isDigest(bad)).toBe(false);
    }
  });
});

describe("hashing", () => {
  test("sha256 of empty bytes is the well-known value", () => {
    expect(sha256(new Uint8Array())).toBe(EMPTY);
    expect(sha256("")).toBe(EMPTY);
  });
  test("Digester gives the same digest in chunks as in one piece and counts bytes", () => {
    const data = crypto.getRandomValues(new Uint8Array(10_000));
    const d = new Digester();
    for (let i = 0; i < data.length; i += 999) d.update(data.subarray(i, i + 999));
    expect(d.size).toBe(10_000);
    expect(d.digest()).toBe(sha256(data));
  });
  test("digestFile and digestBlob hash a file and a byte range of it", async () => {
    const dir = await tempDir("digest-");
    const data = crypto.getRandomValues(new Uint8Array(300_000));
    const p = join(dir, "f");
    await writeFile(p, data);
    expect(await digestFile(p)).toEqual({ digest: sha256(data), size: data.length });
    expect(await digestFile(p, { start: 100, end: 200_100 })).toEqual({ digest: sha256(data.subarray(100, 200_100)), size: 200_000 });
    expect((await digestBlob(Bun.file(p).slice(5, 10))).digest).toBe(sha256(data.subarray(5, 10)));
  });
});
