/**
 * Large writes out of a stream of small chunks: network bodies arrive in 64 KiB pieces, and one
 * `write` per piece costs a thread-pool round trip each. Chunks are copied into a batch buffer;
 * a full batch is written while the next one fills (one write in flight, two buffers), so the
 * disk works while the caller hashes and receives. Used by the blob store's downloads.
 *
 * @module
 */
import type { FileHandle } from "node:fs/promises";

/** Default batch: 1 MiB (16 network chunks; two buffers per download in flight). */
export const WRITE_BATCH_BYTES = 1 << 20;

export class BatchedWriter {
  /** Bytes whose write has completed (on the file, not yet fsynced). */
  written = 0;
  private readonly fh: FileHandle;
  private readonly batch: number;
  private readonly onWritten?: (written: number) => void;
  private buf: Uint8Array | undefined;
  private spare: Uint8Array | undefined;
  private fill = 0;
  private pending: Promise<void> | undefined;
  /** Set by a failed write: nothing more is written after it, so the file stays a prefix. */
  private failed: { error: unknown } | undefined;

  /** `onWritten` is called with {@link written} after each completed write. */
  constructor(fh: FileHandle, opts: { batch?: number; onWritten?: (written: number) => void } = {}) {
    this.fh = fh;
    this.batch = Math.max(1, opts.batch ?? WRITE_BATCH_BYTES);
    this.onWritten = opts.onWritten;
  }

  /** Queues a chunk; waits only when a full batch must wait for the write before it. @throws the error of an earlier write */
  async write(chunk: Uint8Array): Promise<void> {
    for (let off = 0; off < chunk.byteLength; ) {
      this.buf ??= new Uint8Array(this.batch);
      const n = Math.min(this.batch - this.fill, chunk.byteLength - off);
      this.buf.set(off === 0 && n === chunk.byteLength ? chunk : chunk.subarray(off, off + n), this.fill);
      this.fill += n;
      off += n;
      if (this.fill === this.batch) await this.submit();
    }
  }

  /** Writes whatever is queued and waits for every write. @throws the first write error */
  async flush(): Promise<void> {
    if (this.fill > 0) await this.submit();
    await this.settle();
  }

  /** Waits for the write in flight, ignoring its outcome, and drops what is queued. */
  async discard(): Promise<void> {
    this.fill = 0;
    await this.settle().catch(() => {});
  }

  private async submit(): Promise<void> {
    await this.settle();
    if (this.failed) throw this.failed.error;
    const out = this.buf!;
    const n = this.fill;
    this.buf = this.spare;
    this.spare = undefined;
    this.fill = 0;
    this.pending = this.writeAll(out, n).then(
      () => {
        this.spare = out;
        this.written += n;
        this.onWritten?.(this.written);
      },
      (error: unknown) => {
        this.failed = { error };
        throw error;
      },
    );
    // Surfaced by the next settle(); never an unhandled rejection in between.
    this.pending.catch(() => {});
  }

  private async settle(): Promise<void> {
    const p = this.pending;
    this.pending = undefined;
    await p;
    if (this.failed) throw this.failed.error;
  }

  private async writeAll(buf: Uint8Array, n: number): Promise<void> {
    for (let done = 0; done < n; ) {
      const { bytesWritten } = await this.fh.write(buf, done, n - done);
      if (bytesWritten <= 0) throw new Error(`Cannot write: the file took ${bytesWritten} bytes`);
      done += bytesWritten;
    }
  }
}
