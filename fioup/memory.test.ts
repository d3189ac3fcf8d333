import { describe, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readOnlyExecutableMappings } from "./memory.ts";

/** /proc/self/smaps of a fioup process, cut to the fields that matter (a real one has ~20 per mapping). */
const mapping = (header: string, anonymousKb: number, swapKb = 0) => `${header}
Size:               1024 kB
Rss:                 512 kB
Anonymous:      ${String(anonymousKb).padStart(8)} kB
Swap:           ${String(swapKb).padStart(8)} kB
VmFlags: rd mr mw me dw
`;
const SMAPS = [
  mapping("00200000-01a39000 r--p 00000000 fe:00 42                         /usr/bin/fioup", 0),
  mapping("01a40000-0684a000 r-xp 01838000 fe:00 42                         /usr/bin/fioup", 0),
  mapping("0684a000-0685f000 rw-p 06641000 fe:00 42                         /usr/bin/fioup", 48),
  // Relocated read-only data: written at load, then made read-only; its pages are anonymous copies.
  mapping("0685f000-06867000 r--p 06656000 fe:00 42                         /usr/bin/fioup", 12),
  // Read-only data whose anonymous pages were swapped out: still not the file's pages.
  mapping("06867000-06868000 r--p 0665e000 fe:00 42                         /usr/bin/fioup", 0, 4),
  mapping("06868000-06869000 r--p 0665f000 fe:00 42                         /usr/bin/fioup", 0),
  mapping("06869000-06c4c000 rw-p 06660000 fe:00 42                         /usr/bin/fioup", 0),
  mapping("06c4c000-06d00000 rw-p 00000000 00:00 0 ", 100),
  mapping("7f0000000000-7f0000021000 r-xp 00000000 fe:00 7                  /usr/lib/x86_64-linux-gnu/libc.so.6", 0),
].join("");

describe("readOnlyExecutableMappings", () => {
  test("lists the executable's clean code and read-only data, never a writable mapping, one holding anonymous memory, or another file", () => {
    expect(readOnlyExecutableMappings(SMAPS, "/usr/bin/fioup")).toEqual([
      { start: 0x200000, length: 0x1a39000 - 0x200000 },
      { start: 0x1a40000, length: 0x684a000 - 0x1a40000 },
      { start: 0x6868000, length: 0x6869000 - 0x6868000 },
    ]);
  });

  test("skips this process's relocated read-only data, which holds anonymous pages", () => {
    const smaps = readFileSync("/proc/self/smaps", "utf8");
    const advised = readOnlyExecutableMappings(smaps, process.execPath);
    expect(advised.length).toBeGreaterThan(0);
    let start = -1, anonymousReadOnly = 0;
    for (const l of smaps.split("\n")) {
      const m = /^([0-9a-f]+)-[0-9a-f]+ (\S{4}) \S+ \S+ \d+\s*(.*)$/.exec(l);
      if (m) start = m[3] === process.execPath && !m[2]!.includes("w") ? Number.parseInt(m[1]!, 16) : -1;
      else if (start >= 0 && /^Anonymous:\s+[1-9]/.test(l)) {
        anonymousReadOnly++;
        expect(advised.map((x) => x.start)).not.toContain(start);
      }
    }
    expect(anonymousReadOnly).toBeGreaterThan(0);
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
