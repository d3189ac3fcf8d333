import { expect, test } from "bun:test";
import { zstdCompressSync } from "node:zlib";
import { randomBytes } from "node:crypto";
import { zstdFrameHeader, zstdMaxWindow } from "./zstd-window.ts";

const MAGIC = [0x28, 0xb5, 0x2f, 0xfd];
const MiB = 1 << 20;
const frame = (...bytes: number[]) => Uint8Array.of(...MAGIC, ...bytes);

test("a frame header's window: the Window_Descriptor (exponent and mantissa), or the content size of a single segment", () => {
  // Window_Descriptor 0x68: exponent 13 (2^23), mantissa 0; checksum flag set.
  expect(zstdFrameHeader(frame(0x04, 0x68))).toEqual({ windowSize: 8 * MiB, headerBytes: 6, checksum: true });
  // Mantissa 3 adds 3/8 of the base: 8 MiB + 3 MiB.
  expect(zstdFrameHeader(frame(0x00, 0x6b))?.windowSize).toBe(11 * MiB);
  // The largest the format can say: exponent 31, mantissa 7 (2^41 + 7/8 of it), a 4-byte dictionary id and an 8-byte content size after it.
  expect(zstdFrameHeader(frame(0xc3, 0xff, 1, 2, 3, 4, 9, 9, 9, 9, 9, 9, 9, 9))).toEqual({ windowSize: 2 ** 41 + 7 * 2 ** 38, headerBytes: 18, checksum: false });
  // Single segment: no Window_Descriptor, the Frame_Content_Size is the window (1 byte; 2 bytes + 256; 4; 8).
  expect(zstdFrameHeader(frame(0x20, 200))).toEqual({ windowSize: 200, headerBytes: 6, checksum: false });
  expect(zstdFrameHeader(frame(0x60, 0x00, 0x01))?.windowSize).toBe(256 + 256);
  expect(zstdFrameHeader(frame(0xa0, 0xa0, 0x86, 0x01, 0x00))?.windowSize).toBe(100_000);
  expect(zstdFrameHeader(frame(0xe1, 7, 0, 0, 0, 0, 0, 0x01, 0, 0))?.windowSize).toBe(2 ** 40); // with a 1-byte dictionary id
  // Not zstd, cut short, or the reserved bit set.
  expect(zstdFrameHeader(Uint8Array.of(0x1f, 0x8b, 8, 0, 0, 0))).toBeUndefined();
  expect(zstdFrameHeader(frame(0xa0, 0xa0))).toBeUndefined();
  expect(zstdFrameHeader(frame(0x08, 0x68))).toBeUndefined();
});

test("a stream's largest window over all its frames, skippable frames passed over; 0 for what is not zstd", async () => {
  const small = zstdCompressSync(new Uint8Array(1000)); // single segment: its window is its 1000 bytes
  expect(await zstdMaxWindow(new Blob([small]))).toBe(1000);
  // Real frames by zstd itself from a pipe (no content size, so a Window_Descriptor): 2^27 with --long=27.
  const p = Bun.spawnSync(["zstd", "-q", "-c", "--long=27"], { stdin: new TextEncoder().encode("x".repeat(300_000)) });
  expect(p.exitCode).toBe(0);
  const long = p.stdout;
  expect(zstdFrameHeader(long)?.windowSize).toBe(128 * MiB);
  const skippable = Uint8Array.of(0x5a, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3);
  expect(await zstdMaxWindow(new Blob([small, skippable, long, small]))).toBe(128 * MiB);
  expect(await zstdMaxWindow(new Blob([Bun.gzipSync(new Uint8Array(1000))]))).toBe(0);
  expect(await zstdMaxWindow(new Blob([new Uint8Array(0)]))).toBe(0);
});

test("a stream of thousands of frames (zstd:chunked: one a file), read through a buffer: frames and blocks across its refills are walked", async () => {
  const files = Array.from({ length: 3000 }, (_, i) => zstdCompressSync(randomBytes(40 + (i % 7))));
  // Incompressible 300,000 bytes: one frame of three blocks (128 KiB at most each), wider than the buffer.
  const big = zstdCompressSync(randomBytes(300_000));
  const bigWindow = zstdFrameHeader(big)!.windowSize;
  expect(bigWindow).toBeGreaterThanOrEqual(300_000); // the largest: each small frame's is its content
  expect(await zstdMaxWindow(new Blob([...files, big, ...files]))).toBe(bigWindow);
  const p = Bun.spawnSync(["zstd", "-q", "-c", "--long=27"], { stdin: new TextEncoder().encode("x".repeat(300_000)) });
  expect(await zstdMaxWindow(new Blob([...files, big, ...files, p.stdout]))).toBe(128 * MiB);
});
