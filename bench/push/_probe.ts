/**
 * Preloaded into the gateway (and the bare floor, ./_bare.ts) by bench/push (`bun --preload`): on SIGUSR2 it collects garbage
 * (so RSS before and after holding counts live memory, not garbage left by 10,000 handshakes)
 * and writes the process's memory figures as JSON to $PUSH_PROBE_OUT: RSS, the JS heap, and the
 * object types with the most instances (what a held connection keeps alive). Every 250 ms it
 * writes how many devices wait for push in this process (or the requests ./_bare.ts holds) to
 * $PUSH_PROBE_OUT.waiting. With $PUSH_PROBE_SNAPSHOT set, each probe also writes a V8-format heap
 * snapshot beside the figures (<out>.<n>.heapsnapshot; bench/push/heap-diff.ts compares two).
 *
 * @module
 */
import { generateHeapSnapshot } from "bun";
import { heapStats } from "bun:jsc";
import { renameSync, writeFileSync } from "node:fs";
import { TimestampWatch } from "../../gateway/push.ts";

const out = process.env.PUSH_PROBE_OUT;
if (out) {
  let probes = 0;
  process.on("SIGUSR2", () => {
    Bun.gc(true);
    Bun.gc(true);
    const h = heapStats();
    const m = process.memoryUsage();
    const top = Object.entries(h.objectTypeCounts).sort((a, b) => b[1] - a[1]).slice(0, 40);
    writeFileSync(`${out}.tmp`, JSON.stringify({ rss: m.rss, heapSize: h.heapSize, heapCapacity: h.heapCapacity, extraMemorySize: h.extraMemorySize, objectCount: h.objectCount, top }));
    if (process.env.PUSH_PROBE_SNAPSHOT) writeFileSync(`${out}.${probes}.heapsnapshot`, generateHeapSnapshot("v8"));
    probes++;
    renameSync(`${out}.tmp`, out);
  });
  // The bare ceiling (./_bare.ts) counts its own held requests.
  const held = () => (globalThis as { pushBenchHeld?: () => number }).pushBenchHeld?.() ?? TimestampWatch.waitingInProcess;
  setInterval(() => writeFileSync(`${out}.waiting`, String(held())), 250).unref();
}
