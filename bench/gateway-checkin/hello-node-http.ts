/**
 * The previous transport, for comparison: node:tls (client certificates requested) handing each
 * socket to a node:http server that answers "hello". Usage: bun hello-node-http.ts <config.json>
 */
import { createServer as createHttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createServer as createTlsServer } from "node:tls";

const cfg = (await Bun.file(process.argv[2]!).json()) as { cert: string; key: string; ca: string };
const http = createHttpServer((_req, res) => {
  res.writeHead(200, { "content-type": "text/plain", "content-length": "5" });
  res.end("hello");
});
http.keepAliveTimeout = 120_000; // kept-alive devices wait their turn
const tls = createTlsServer({ requestCert: true, rejectUnauthorized: false, ca: cfg.ca, cert: cfg.cert, key: cfg.key }, (sock) => http.emit("connection", sock));
tls.on("tlsClientError", () => {});
tls.listen(0, "127.0.0.1", () => console.error(`hello listening on https://127.0.0.1:${(tls.address() as AddressInfo).port}`));
process.on("SIGTERM", () => process.exit(0));
