/**
 * A bare `Bun.listen` TLS server answering "hello" with the least JavaScript per connection: TLS
 * options and peer-certificate read as the gateway's transport has them, no HTTP parser (one
 * fixed answer per read, then close). The transport hello minus this is what our code in
 * gateway/transport/ costs; this minus the Bun.serve hello is what Bun.listen itself costs per
 * connection (a JS socket object and its callbacks) against uWebSockets' C++ path.
 *
 * Usage: bun hello-listen.ts <config.json>
 */
export {}; // a module (top-level await)

const cfg = (await Bun.file(process.argv[2]!).json()) as { cert: string; key: string; ca: string };
const HELLO = Buffer.from("HTTP/1.1 200 OK\r\ncontent-type: text/plain;charset=utf-8\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello");
const listener = Bun.listen({
  hostname: "127.0.0.1",
  port: 0,
  tls: { cert: cfg.cert, key: cfg.key, ca: cfg.ca, requestCert: true, rejectUnauthorized: false },
  socket: {
    handshake(sock) {
      if (!sock.authorized || !sock.getPeerX509Certificate()) sock.terminate();
    },
    data(sock) {
      sock.write(HELLO);
      sock.end();
    },
  },
});
console.error(`hello listening on https://127.0.0.1:${listener.port}`);
process.on("SIGTERM", () => {
  listener.stop(true);
  process.exit(0);
});
