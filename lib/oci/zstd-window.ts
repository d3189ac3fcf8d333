/**
 * The memory a zstd decoder takes for a stream's window, read from its frame headers without
 * decoding it (RFC 8878, section 3.1.1): the frame asks the window it was made with, up to 2 GiB
 * (`zstd --long=31`, or a single-segment frame of a large content), and the decoder allocates it
 * whatever the content's size, though it fills (and so takes memory for) no more of it than the
 * content it decodes. A memory check before decoding a zstd layer counts it, up to that content.
 *
 * A stream is frames one after another (zstd:chunked layers hold one a file); skippable frames
 * hold no window. Each frame's blocks are walked by their 3-byte headers to find the next frame.
 *
 * @module
 */

const ZSTD_MAGIC = 0xfd2fb528;
/** Skippable frames: magic 0x184D2A50 to 0x184D2A5F, then their size. */
const SKIPPABLE_MASK = 0xfffffff0;
const SKIPPABLE_MAGIC = 0x184d2a50;
/** The largest frame header: magic, descriptor, window, 4-byte dictionary id, 8-byte content size. */
const MAX_HEADER = 18;
/** Bytes read from the blob at a time while walking its frames. */
const READ_BUFFER = 64 * 1024;

/** A frame header as far as its window goes: its window size and the header's length. */
export interface ZstdFrameHeader {
  /** Bytes of window the decoder needs (the content size of a single-segment frame). */
  windowSize: number;
  /** Length of the header (magic included): the first block follows. */
  headerBytes: number;
  /** The frame ends with a 4-byte checksum after its last block. */
  checksum: boolean;
}

/**
 * Reads a zstd frame header from its first bytes (at least {@link MAX_HEADER}, or all there are).
 * Undefined when `head` is not a zstd frame or is cut short.
 *
 * @example
 * ```ts
 * zstdFrameHeader(Uint8Array.of(0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x68)); // window 8 MiB: { windowSize: 8388608, headerBytes: 6, checksum: true }
 * ```
 */
export function zstdFrameHeader(head: Uint8Array): ZstdFrameHeader | undefined {
  if (head.length < 6) return undefined;
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (view.getUint32(0, true) !== ZSTD_MAGIC) return undefined;
  const descriptor = head[4]!;
  const fcsFlag = descriptor >> 6;
  const singleSegment = (descriptor >> 5) & 1;
  const checksum = ((descriptor >> 2) & 1) === 1;
  if (descriptor & 0x08) return undefined; // the reserved bit: not a frame this format knows
  const dictionaryBytes = [0, 1, 2, 4][descriptor & 3]!;
  const contentBytes = [singleSegment ? 1 : 0, 2, 4, 8][fcsFlag]!;
  let at = 5;
  let windowSize = 0;
  if (!singleSegment) {
    const w = head[at++]!;
    const windowLog = 10 + (w >> 3);
    const base = 2 ** windowLog;
    windowSize = base + (base / 8) * (w & 7);
  }
  at += dictionaryBytes;
  if (head.length < at + contentBytes) return undefined;
  if (singleSegment) {
    // The content size is the window: the frame is decoded in one piece.
    windowSize =
      contentBytes === 1 ? head[at]! : contentBytes === 2 ? view.getUint16(at, true) + 256 : contentBytes === 4 ? view.getUint32(at, true) : Number(view.getBigUint64(at, true));
  }
  return { windowSize, headerBytes: at + contentBytes, checksum };
}

/**
 * The largest window any zstd frame of `blob` asks (bytes), walking frame after frame; 0 when it
 * is not zstd. A stream cut short, or that stops being zstd, counts the frames read so far (its
 * decoding fails anyway).
 */
export async function zstdMaxWindow(blob: Blob): Promise<number> {
  // Through a buffer: a zstd:chunked layer is a frame per file, so tens of thousands of 3-byte
  // block headers, each its own file read otherwise.
  let buf = new Uint8Array(0);
  let bufAt = 0;
  const read = async (at: number, n: number): Promise<Uint8Array> => {
    const end = bufAt + buf.length;
    // Held: from `at`, n bytes, or all the blob has left there.
    const held = at >= bufAt && at <= end && (at + n <= end || end >= blob.size);
    if (!held) {
      bufAt = at;
      buf = new Uint8Array(await blob.slice(at, at + Math.max(n, READ_BUFFER)).arrayBuffer());
    }
    return buf.subarray(at - bufAt, at - bufAt + n);
  };
  let max = 0;
  let at = 0;
  while (at < blob.size) {
    const head = await read(at, MAX_HEADER);
    if (head.length < 8) break;
    const magic = new DataView(head.buffer, head.byteOffset, head.byteLength).getUint32(0, true);
    if ((magic & SKIPPABLE_MASK) >>> 0 === SKIPPABLE_MAGIC) {
      at += 8 + new DataView(head.buffer, head.byteOffset, head.byteLength).getUint32(4, true);
      continue;
    }
    const frame = zstdFrameHeader(head);
    if (!frame) break;
    max = Math.max(max, frame.windowSize);
    at += frame.headerBytes;
    for (;;) {
      const b = await read(at, 3);
      if (b.length < 3) return max;
      const header = b[0]! | (b[1]! << 8) | (b[2]! << 16);
      const type = (header >> 1) & 3;
      if (type === 3) return max; // reserved: not zstd any more
      at += 3 + (type === 1 ? 1 : header >>> 3);
      if (header & 1) break;
    }
    if (frame.checksum) at += 4;
  }
  return max;
}
