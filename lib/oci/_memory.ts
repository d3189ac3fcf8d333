/**
 * Bounded memory while bytes stream through: each network or file chunk is a fresh buffer the
 * garbage collector barely counts (the JS heap stays a few MB while hundreds of MB of chunks
 * pass), so dead chunks pile up until an unrelated collection. Streaming code calls
 * {@link releaseChunks} with the bytes it handled; once `GC_EVERY_BYTES` have passed through
 * the process (all streams together), one synchronous collection frees them.
 *
 * @module
 */

/** Bytes streamed between two collections: 16 MiB. For a 500 MB fetch by the compiled fioup: peak RSS 136 MB without, 116 MB at 32 MiB, 101 MB at 16 MiB, for 4% and 12% more CPU time. */
export const GC_EVERY_BYTES = 16 << 20;

let since = 0;

/** Counts `bytes` streamed; collects garbage once every {@link GC_EVERY_BYTES}. */
export function releaseChunks(bytes: number): void {
  since += bytes;
  if (since < GC_EVERY_BYTES) return;
  since = 0;
  Bun.gc(true);
}
