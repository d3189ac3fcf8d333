/**
 * A fault-injecting TCP proxy on 127.0.0.1 for "bad network" tests. It passes
 * bytes through untouched (TLS stays end to end) and, while faults are queued,
 * breaks the next connection that has carried `afterBytes` server→client
 * bytes: `drop` resets both sides, `truncate` ends the client side cleanly
 * (FIN, as if the response were complete), `stall` stops forwarding for
 * `stallMs` and then carries on.
 *
 * @module
 */
import { connect, createServer, type Socket } from "node:net";

export type FaultKind = "drop" | "truncate" | "stall";
export interface Fault {
  kind: FaultKind;
  /** Server→client bytes the connection carries before the fault. */
  afterBytes: number;
  stallMs?: number;
}

export interface FaultProxy {
  port: number;
  /** Faults still queued, and what happened so far. */
  readonly pending: number;
  readonly applied: Fault[];
  /** Total server→client bytes carried. */
  readonly bytesDown: number;
  /** Queue faults, applied in order, one per connection that reaches its byte count. */
  inject(...faults: Fault[]): void;
  /** Where to forward (can be set after start). */
  target: number;
  close(): Promise<void>;
}

/** Starts the proxy on `port` (0 = any free one) forwarding to 127.0.0.1:`target`. */
export async function startFaultProxy(port: number, target: number): Promise<FaultProxy> {
  const queue: Fault[] = [];
  const applied: Fault[] = [];
  const sockets = new Set<Socket>();
  let bytesDown = 0;
  const proxy: FaultProxy = {
    port: 0,
    target,
    get pending() {
      return queue.length;
    },
    applied,
    get bytesDown() {
      return bytesDown;
    },
    inject: (...f) => void queue.push(...f),
    close: () =>
      new Promise<void>((res) => {
        for (const s of sockets) s.destroy();
        server.close(() => res());
      }),
  };
  const server = createServer((client) => {
    const upstream = connect(proxy.target, "127.0.0.1");
    sockets.add(client).add(upstream);
    let carried = 0;
    let stalled = false;
    const kill = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", kill).on("close", kill);
    upstream.on("error", kill).on("close", kill);
    client.on("data", (d) => upstream.write(d));
    upstream.on("data", (d: Buffer) => {
      const f = queue[0];
      if (f && !stalled && carried + d.length >= f.afterBytes) {
        queue.shift();
        applied.push(f);
        const head = d.subarray(0, Math.max(0, f.afterBytes - carried));
        const rest = d.subarray(head.length);
        client.write(head);
        carried += head.length;
        bytesDown += head.length;
        if (f.kind === "drop") {
          client.resetAndDestroy();
          upstream.destroy();
        } else if (f.kind === "truncate") {
          upstream.destroy();
          client.end();
        } else {
          stalled = true;
          upstream.pause();
          setTimeout(() => {
            stalled = false;
            if (!client.destroyed) {
              client.write(rest);
              carried += rest.length;
              bytesDown += rest.length;
            }
            upstream.resume();
          }, f.stallMs ?? 3000);
        }
        return;
      }
      carried += d.length;
      bytesDown += d.length;
      client.write(d);
    });
  });
  await new Promise<void>((res) => server.listen(port, "127.0.0.1", () => res()));
  proxy.port = (server.address() as { port: number }).port;
  return proxy;
}
