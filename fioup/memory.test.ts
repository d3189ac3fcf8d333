import { describe, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readOnlyExecutableMappings } from "./memory.ts";

const MAPS = `00200000-01a39000 r--p 00000000 fe:00 42 /usr/bin/fioup
01a40000-0684a000 r-xp 01838000 fe:00 42 /usr/bin/fioup
0684a000-0685f000 rw-p 06641000 fe:00 42 /usr/bin/fioup
0685f000-06867000 r--p 06656000 fe:00 42 /usr/bin/fioup
06867000-06c4c000 rw-p 0665e000 fe:00 42 /usr/bin/fioup
06c4c000-06d00000 rw-p 00000000 00:00 0
7f0000000000-7f0000021000 r-xp 00000000 fe:00 7 /usr/lib/x86_64-linux-gnu/libc.so.6
`;

describe("readOnlyExecutableMappings", () => {
  test("lists the executable's code and read-only data, never a writable mapping or another file", () => {
    expect(readOnlyExecutableMappings(MAPS, "/usr/bin/fioup")).toEqual([
      { start: 0x200000, length: 0x1a39000 - 0x200000 },
      { start: 0x1a40000, length: 0x684a000 - 0x1a40000 },
      { start: 0x685f000, length: 0x6867000 - 0x685f000 },
    ]);
  });
});

describe("releaseExecutablePages", () => {
  // A private copy of the runtime, so no other process on the machine shares its pages (the
  // kernel reclaims only pages this process alone maps).
  const probe = `
    import { readFileSync } from "node:fs";
    import { releaseExecutablePages } from ${JSON.stringify(join(import.meta.dir, "memory.ts"))};
    const exeKb = () => {
      let kb = 0, ours = false;
      for (const l of readFileSync("/proc/self/smaps", "utf8").split("\\n")) {
        const m = /^[0-9a-f]+-[0-9a-f]+ \\S{4} \\S+ \\S+ \\d+\\s*(.*)$/.exec(l);
        if (m) ours = m[1] === process.execPath;
        else if (ours && l.startsWith("Rss:")) kb += Number(l.split(/\\s+/)[1]);
      }
      return kb;
    };
    const before = exeKb();
    const r = await releaseExecutablePages();
    const after = exeKb();
    await Bun.sleep(10);
    console.log(JSON.stringify({ before, after, r, stillRuns: [1, 2, 3].map((x) => x * 2).join() }));
  `;
  const run = async (env: Record<string, string>) => {
    const dir = mkdtempSync(join(tmpdir(), "fioup-memory-"));
    try {
      const bun = join(dir, "bun");
      copyFileSync(process.execPath, bun);
      const p = Bun.spawn([bun, "-e", probe], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "inherit" });
      const out = await new Response(p.stdout).text();
      expect(await p.exited).toBe(0);
      return JSON.parse(out) as { before: number; after: number; r: { released: boolean; reason?: string }; stillRuns: string };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  test("reclaims most of the executable's resident pages, and the program runs on", async () => {
    const { before, after, r, stillRuns } = await run({ BUN_JSC_useBaselineJIT: "0" });
    expect(r.released).toBe(true);
    expect(after).toBeLessThan(before / 2);
    expect(stillRuns).toBe("2,4,6");
  });

  test("does nothing and says why when the JIT is off (bun:ffi needs it)", async () => {
    const { before, after, r } = await run({ BUN_JSC_useJIT: "0" });
    expect(r).toEqual({ released: false, reason: expect.stringContaining("JIT") });
    expect(after).toBeGreaterThan(before / 2);
  });
});
