import { describe, expect, test } from "bun:test";
import type { StatsFs } from "node:fs";
import { tmpdir } from "node:os";
import { fileSystemSpace, freeBytes, spaceOf } from "./free.ts";

const stats = { bsize: 4096, blocks: 1000, bfree: 300, bavail: 250 } as StatsFs;

describe("spaceOf", () => {
  test("an unprivileged writer's room leaves the reserved blocks out", () => {
    expect(spaceOf(stats)).toEqual({ free: 250 * 4096, size: 1000 * 4096, blockSize: 4096 });
  });

  test("a block size of 0 (some FUSE file systems) counts as 4 KiB, not as a disk without room", () => {
    expect(spaceOf({ ...stats, bsize: 0 })).toEqual({ free: 250 * 4096, size: 1000 * 4096, blockSize: 4096 });
  });

  test("asThisProcess counts the reserved blocks only when this process is root", () => {
    const root = process.getuid?.() === 0;
    expect(spaceOf(stats, { asThisProcess: true }).free).toBe((root ? 300 : 250) * 4096);
  });
});

describe("fileSystemSpace", () => {
  test("measures an existing folder, and says undefined for one that is not there", async () => {
    const s = await fileSystemSpace(tmpdir());
    expect(s!.size).toBeGreaterThan(0);
    expect(s!.free).toBeLessThanOrEqual(s!.size);
    expect(await freeBytes("/nonexistent/folder")).toBeUndefined();
  });
});
