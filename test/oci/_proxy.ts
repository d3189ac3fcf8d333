/**
 * A loopback TCP proxy for tests that must break a connection mid-download: it forwards bytes
 * both ways and, when armed, closes the client connection after N more response bytes.
 */
import { createServer, connect, type Socket } from "node:net";

export interface CuttingProxy {
  port: number;
  /** Close the connection after this many more server→client bytes (once). */
  cutAfter(bytes: number): void;
  /** Whether the armed cut has happened. */
  readonly cut: boolean;
  close(): Promise<void>;
}

export async function startCuttingProxy(targetPort: number): Promise<CuttingProxy> {
  let budget: number | undefined;
  let cut = false;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(targetPort, "127.0.0.1");
    sockets.add(client);
    sockets.add(upstream);
    const destroy = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", destroy);
    upstream.on("error", destroy);
    client.on("close", destroy);
    upstream.on("close", destroy);
    client.pipe(upstream);
    upstream.on("data", (chunk: Buffer) => {
      if (budget !== undefined) {
        if (chunk.length >= budget) {
          const head = chunk.subarray(0, budget);
          budget = undefined;
          cut = true;
          client.end(head, () => destroy());
          upstream.destroy();
          return;
        }
        budget -= chunk.length;
      }
      if (!client.write(chunk)) {
        upstream.pause();
        client.once("drain", () => upstream.resume());
      }
    });
    upstream.on("end", () => client.end());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  return {
    port,
    cutAfter(bytes) {
      budget = bytes;
      cut = false;
    },
    get cut() {
      return cut;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
