/**
 * A fault-injecting TCP proxy on 127.0.0.1 for "bad network" tests. It passes bytes through
 * untouched (TLS stays end to end), counts what it carries in each direction and how many
 * connections it accepted, and breaks things on demand:
 *
 * - queued faults (`inject`), applied in order, one per connection that has carried
 *   `afterBytes` server→client bytes since the fault reached the head of the queue (so a
 *   kept-alive connection that carried much before still gets the full count): `drop` resets both sides, `truncate` ends the client
 *   side cleanly (FIN, as if the response were complete), `stall` stops forwarding for
 *   `stallMs` and then carries on, `down` takes the whole proxy down for `downMs` (below);
 * - `down(ms)`: the gateway disappears: open connections are reset and the port refuses
 *   connections (ECONNREFUSED) for `ms`, then it listens again on the same port.
 *
 * @module
 */
import { connect, createServer, type Server, type Socket } from "node:net";

export type FaultKind = "drop" | "truncate" | "stall" | "down";
export interface Fault {
  kind: FaultKind;
  /** Server→client bytes the connection carries (after the fault is next in line) before the fault. */
  afterBytes: number;
  /** For `stall`: how long nothing is forwarded (default 3 s). */
  stallMs?: number;
  /** For `down`: how long connections are refused (default 3 s). */
  downMs?: number;
}

export interface FaultProxy {
  port: number;
  /** Faults still queued. */
  readonly pending: number;
  /** Faults applied so far, in order. */
  readonly applied: Fault[];
  /** Total server→client bytes carried. */
  readonly bytesDown: number;
  /** Total client→server bytes carried. */
  readonly bytesUp: number;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Connections open now. */
  readonly open: number;
  /** Queue faults, applied in order, one per connection that reaches its byte count. */
  inject(...faults: Fault[]): void;
  /** Queue `times` drops, each on a connection once it has carried `afterBytes` bytes. */
  dropRepeatedly(afterBytes: number, times: number): void;
  /** Resolves once the queue is empty (or after `timeoutMs`, false). */
  drained(timeoutMs?: number): Promise<boolean>;
  /** Resets every open connection and refuses new ones for `ms`; resolves when listening again. */
  down(ms: number): Promise<void>;
  /** True while down. */
  readonly isDown: boolean;
  /** Where to forward (can be set after start). */
  target: number;
  close(): Promise<void>;
}

/**
 * Starts the proxy on `port` (0 = any free one) forwarding to 127.0.0.1:`target`.
 *
 * @example
 * ```ts
 * const proxy = await startFaultProxy(0, gatewayPort);
 * proxy.dropRepeatedly(1 << 20, 10); // ten connections reset after 1 MiB each
 * const down = proxy.down(20_000); // refuses connections for 20 s
 * ```
 */
export async function startFaultProxy(port: number, target: number): Promise<FaultProxy> {
  const queue: Fault[] = [];
  const applied: Fault[] = [];
  const sockets = new Set<Socket>();
  /** Bumped whenever another fault becomes the head of the queue. */
  let epoch = 0;
  let bytesDown = 0;
  let bytesUp = 0;
  let connections = 0;
  let open = 0;
  let server: Server;
  let isDown = false;
  let closed = false;

  const onConnection = (client: Socket) => {
    connections++;
    open++;
    const upstream = connect(proxy.target, "127.0.0.1");
    sockets.add(client).add(upstream);
    let carried = 0;
    let connEpoch = epoch;
    let base = 0; // `carried` when the current head fault was armed for this connection
    let stalled = false;
    let closed = false;
    const kill = () => {
      if (!closed) {
        closed = true;
        open--;
      }
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", kill).on("close", kill);
    upstream.on("error", kill).on("close", kill);
    // Backpressure both ways: bytes counted as carried are at most a socket buffer ahead of
    // the receiver, so "in flight at a fault" stays what a real link would have in flight.
    const send = (to: Socket, from: Socket, d: Buffer) => {
      if (!to.write(d)) {
        from.pause();
        to.once("drain", () => {
          if (!stalled || from === client) from.resume();
        });
      }
    };
    client.on("data", (d: Buffer) => {
      bytesUp += d.length;
      send(upstream, client, d);
    });
    upstream.on("data", (d: Buffer) => {
      const f = queue[0];
      if (connEpoch !== epoch) {
        connEpoch = epoch;
        base = carried;
      }
      if (f && !stalled && carried - base + d.length >= f.afterBytes) {
        queue.shift();
        epoch++;
        applied.push(f);
        const head = d.subarray(0, Math.max(0, f.afterBytes - (carried - base)));
        const rest = d.subarray(head.length);
        client.write(head);
        carried += head.length;
        bytesDown += head.length;
        if (f.kind === "down") {
          void proxy.down(f.downMs ?? 3000);
        } else if (f.kind === "drop") {
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
      send(client, upstream, d);
    });
  };

  const listen = (p: number) =>
    new Promise<void>((res, rej) => {
      server = createServer(onConnection);
      server.once("error", rej);
      server.listen(p, "127.0.0.1", () => res());
    });

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
    get bytesUp() {
      return bytesUp;
    },
    get connections() {
      return connections;
    },
    get open() {
      return open;
    },
    get isDown() {
      return isDown;
    },
    inject: (...f) => {
      if (queue.length === 0) epoch++;
      queue.push(...f);
    },
    dropRepeatedly: (afterBytes, times) => proxy.inject(...Array.from({ length: times }, () => ({ kind: "drop" as const, afterBytes }))),
    async drained(timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      while (queue.length > 0) {
        if (Date.now() > deadline) return false;
        await Bun.sleep(20);
      }
      return true;
    },
    async down(ms) {
      isDown = true;
      await new Promise<void>((res) => {
        server.close(() => res());
        for (const s of sockets) s.resetAndDestroy();
      });
      await Bun.sleep(ms);
      if (closed) return;
      // The port may be briefly held by a client's connect attempt: retry for a moment.
      for (let i = 0; ; i++) {
        try {
          await listen(proxy.port);
          isDown = false;
          return;
        } catch (err) {
          if (i >= 50) throw err;
          await Bun.sleep(100);
        }
      }
    },
    close: () =>
      new Promise<void>((res) => {
        closed = true;
        for (const s of sockets) s.destroy();
        if (!server.listening) return res();
        server.close(() => res());
      }),
  };
  await listen(port);
  proxy.port = (server!.address() as { port: number }).port;
  return proxy;
}
