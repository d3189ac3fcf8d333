import { describe, expect, test } from "bun:test";
import { open, readFile } from "node:fs/promises";
import { join } from "node:path";
import { tempDir } from "../../test/harness/tmp.ts";
import { BatchedWriter } from "./_batched-writer.ts";

describe("BatchedWriter", () => {
  test("writes every chunk in order in batch-sized writes, reporting completed bytes", async () => {
    const file = join(await tempDir("batched-"), "out");
    const fh = await open(file, "w");
    const seen: number[] = [];
    const w = new BatchedWriter(fh, { batch: 1000, onWritten: (n) => seen.push(n) });
    const all = crypto.getRandomValues(new Uint8Array(4567));
    for (let off = 0; off < all.length; off += 333) await w.write(all.subarray(off, off + 333));
    expect(w.written).toBeLessThan(all.length); // the tail is still queued
    await w.flush();
    await fh.close();
    expect(new Uint8Array(await readFile(file))).toEqual(all);
    expect(seen).toEqual([1000, 2000, 3000, 4000, 4567]);
  });

  test("after a failed write nothing more is written and the error surfaces", async () => {
    const fh = await open("/dev/full", "w");
    const w = new BatchedWriter(fh, { batch: 10 });
    let err: unknown;
    try {
      for (let i = 0; i < 5; i++) await w.write(new Uint8Array(10));
      await w.flush();
    } catch (e) {
      err = e;
    }
    await fh.close();
    expect((err as NodeJS.ErrnoException)?.code).toBe("ENOSPC");
    expect(w.written).toBe(0);
    await expect(w.flush()).rejects.toThrow(/ENOSPC|no space/i);
  });
});
