/**
 * Preloaded into the gateway by bench/push (`bun --preload`): on SIGUSR2 it collects garbage
 * (so RSS before and after holding counts live memory, not garbage left by 10,000 handshakes)
 * and writes the process's memory figures as JSON to $PUSH_PROBE_OUT: RSS, the JS heap, and the
 * object types with the most instances (what a held connection keeps alive). Every 250 ms it
 * writes how many devices wait for push in this process to $PUSH_PROBE_OUT.waiting.
 *
 * @module
 */
import { heapStats } from "bun:jsc";
import { renameSync, writeFileSync } from "node:fs";
import { TimestampWatch } from "../../gateway/push.ts";

const out = process.env.PUSH_PROBE_OUT;
if (out) {
  process.on("SIGUSR2", () => {
    Bun.gc(true);
    Bun.gc(true);
    const h = heapStats();
    const m = process.memoryUsage();
    const top = Object.entries(h.objectTypeCounts).sort((a, b) => b[1] - a[1]).slice(0, 40);
    writeFileSync(`${out}.tmp`, JSON.stringify({ rss: m.rss, heapSize: h.heapSize, heapCapacity: h.heapCapacity, extraMemorySize: h.extraMemorySize, objectCount: h.objectCount, top }));
    renameSync(`${out}.tmp`, out);
  });
  setInterval(() => writeFileSync(`${out}.waiting`, String(TimestampWatch.waitingInProcess)), 250).unref();
}
