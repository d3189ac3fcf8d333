/**
 * Gives back the resident pages of fioup's own executable that an idle daemon does not use.
 *
 * The daemon's start (system info, converging the apps) and every update touch code of the Bun
 * runtime that the idle loop never runs again: SQLite's schema code, compose spawning, image
 * loading, registry pulls. Those pages are clean copies of the executable file, so they stay
 * resident (counted in RSS) until the kernel needs the memory. `MADV_PAGEOUT` on the
 * executable's read-only mappings asks the kernel to reclaim them now; whatever the next cycle
 * touches is read back from the file (one major fault per page, once). Only clean file-backed
 * mappings are advised: writable ones are left alone, and so is any read-only mapping that holds
 * anonymous memory (the relocated read-only data, written once at load and then made read-only, is
 * a private copy-on-write copy, not the file's pages), which would otherwise go to swap or zram.
 * The advice never changes what a page holds.
 *
 * madvise is reached through bun:ffi, which needs the JIT enabled (`BUN_JSC_useJIT=0` refuses
 * it; `BUN_JSC_useBaselineJIT=0`, which lib/device/fioup.service sets, keeps JavaScript interpreted and
 * allows it). Where it is unavailable, or the kernel is older than 5.4, nothing happens. The
 * kernel reclaims only pages no other process maps, and only for a process that owns the file
 * or may write it (the daemon runs as root).
 *
 * @module
 */
import { readFileSync, readlinkSync } from "node:fs";

/** Linux's MADV_PAGEOUT (since 5.4): reclaim these pages now. */
const MADV_PAGEOUT = 21;

type Madvise = (addr: number, length: number, advice: number) => number;

/** What {@link releaseExecutablePages} did. */
export type ReleaseResult = { released: true; bytes: number } | { released: false; reason: string };

let madvise: Madvise | undefined;
let unavailable: string | undefined;

async function loadMadvise(): Promise<Madvise> {
  const { dlopen, FFIType } = await import("bun:ffi");
  const libc = dlopen("libc.so.6", { madvise: { args: [FFIType.u64, FFIType.u64, FFIType.i32], returns: FFIType.i32 } });
  return (addr, length, advice) => libc.symbols.madvise(addr, length, advice) as number;
}

/**
 * The executable's mappings that are never written and hold no anonymous memory (code and
 * read-only data still backed by the file), from /proc/self/smaps. A read-only mapping with
 * anonymous or swapped pages (relocated data) is skipped.
 */
export function readOnlyExecutableMappings(smaps = readFileSync("/proc/self/smaps", "utf8"), exe = readlinkSync("/proc/self/exe")): { start: number; length: number }[] {
  const out: { start: number; length: number }[] = [];
  let current: { start: number; length: number; anonymous: boolean } | undefined;
  const flush = () => {
    if (current && !current.anonymous) out.push({ start: current.start, length: current.length });
    current = undefined;
  };
  for (const line of smaps.split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (m) {
      flush();
      if (m[4] !== exe || m[3]!.includes("w")) continue;
      const start = Number.parseInt(m[1]!, 16);
      current = { start, length: Number.parseInt(m[2]!, 16) - start, anonymous: false };
      continue;
    }
    const field = /^(Anonymous|Swap):\s+(\d+) kB/.exec(line);
    if (current && field && Number(field[2]) > 0) current.anonymous = true;
  }
  flush();
  return out;
}

/**
 * Asks the kernel to reclaim the resident pages of this executable's read-only mappings.
 * Never throws: without bun:ffi (JIT disabled), libc or the advice, it says why and does nothing.
 */
export async function releaseExecutablePages(): Promise<ReleaseResult> {
  if (unavailable) return { released: false, reason: unavailable };
  try {
    madvise ??= await loadMadvise();
    let bytes = 0;
    for (const { start, length } of readOnlyExecutableMappings()) if (madvise(start, length, MADV_PAGEOUT) === 0) bytes += length;
    if (bytes === 0) unavailable = "madvise(MADV_PAGEOUT) refused (Linux before 5.4?)";
    return unavailable ? { released: false, reason: unavailable } : { released: true, bytes };
  } catch (e) {
    unavailable = (e as Error).message;
    return { released: false, reason: unavailable };
  }
}
