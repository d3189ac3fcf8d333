/**
 * Bytes the embedded registry hands to the transport, per client and kind (blob or manifest):
 * an account of what each device downloaded that does not depend on the device's own counters.
 * A response body is counted chunk by chunk as the transport pulls it (the stream has no
 * read-ahead), so a download cut midway counts only what was pulled: the bytes written to the
 * socket plus at most the chunk in hand.
 *
 * Devices count together (client="device") unless `perDevice` is asked (`gateway serve
 * --metrics-per-device`): one series per device is a label per device on /metrics, which a fleet of
 * a million makes a million series (Prometheus's limit long before), held in memory until the
 * gateway stops, and every device's uuid readable by whoever may read /metrics (no token). The
 * tests and a small fleet turn it on to check what each device fetched.
 *
 * @module
 */

/** "delta": a layer delta blob (deltas.ts), counted apart from full blobs. */
export type ServedKind = "blob" | "manifest" | "delta";

export class ServedBytes {
  readonly #by = new Map<string, number>();
  readonly #perDevice: boolean;

  /** @param opts.perDevice Count each device apart (`device:<uuid>`) instead of all as `device`. */
  constructor(opts: { perDevice?: boolean } = {}) {
    this.#perDevice = opts.perDevice ?? false;
  }

  /** Adds `n` bytes served to `client` (e.g. `device:<uuid>`, `admin`; `device` for any device unless per device). */
  add(client: string, kind: ServedKind, n: number): void {
    if (!this.#perDevice && client.startsWith("device:")) client = "device";
    const key = `${kind}\u0000${client}`;
    this.#by.set(key, (this.#by.get(key) ?? 0) + n);
  }

  /** Bytes served so far to `client` (all clients when omitted; every device's as `device` unless per device). */
  get(kind: ServedKind, client?: string): number {
    if (client !== undefined) return this.#by.get(`${kind}\u0000${client}`) ?? 0;
    let n = 0;
    for (const [key, v] of this.#by) if (key.startsWith(`${kind}\u0000`)) n += v;
    return n;
  }

  /** Prometheus text lines: `gateway_registry_bytes_served_total{kind,client}` counters. */
  render(): string[] {
    const lines = [
      "# HELP gateway_registry_bytes_served_total Registry response body bytes handed to the transport, by kind and client",
      "# TYPE gateway_registry_bytes_served_total counter",
    ];
    for (const [key, n] of this.#by) {
      const [kind, client] = key.split("\u0000");
      lines.push(`gateway_registry_bytes_served_total{kind="${kind}",client="${client!.replace(/[\\"\n]/g, "_")}"} ${n}`);
    }
    return lines;
  }

  /**
   * Wraps a response body so each chunk is counted when the reader pulls it (highWaterMark 0:
   * nothing is read ahead of the transport).
   */
  counted(body: ReadableStream<Uint8Array>, client: string, kind: ServedKind): ReadableStream<Uint8Array> {
    const reader = body.getReader();
    return new ReadableStream<Uint8Array>(
      {
        pull: async (ctrl) => {
          const { done, value } = await reader.read();
          if (done) return ctrl.close();
          this.add(client, kind, value.byteLength);
          ctrl.enqueue(value);
        },
        cancel: (reason) => reader.cancel(reason),
      },
      { highWaterMark: 0 },
    );
  }
}
