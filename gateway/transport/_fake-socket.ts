/** A socket for unit tests of the transport's pieces: takes at most `window` bytes per write, records everything. */
import type { WireSocket } from "./connection.ts";

export class FakeSocket implements WireSocket {
  written: Uint8Array[] = [];
  ended = false;
  terminated = false;
  paused = false;
  constructor(public window = Infinity) {}
  write(data: Uint8Array): number {
    const n = Math.min(this.window, data.byteLength);
    if (n > 0) this.written.push(data.slice(0, n));
    return n;
  }
  end() {
    this.ended = true;
  }
  terminate() {
    this.terminated = true;
  }
  pause() {
    this.paused = true;
  }
  resume() {
    this.paused = false;
  }
  text(): string {
    return Buffer.concat(this.written).toString("latin1");
  }
}
