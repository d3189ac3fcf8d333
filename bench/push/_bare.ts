/**
 * The ceiling of bench/push: a bare `Bun.listen` server with the gateway's TLS setup (its server
 * certificate, client certificates requested and verified against the factory CA) that holds
 * every request it is sent and never answers, keeping nothing per connection but a flag. What a
 * held connection costs here is what TLS sockets cost in Bun, with no HTTP layer and no app.
 *
 * Started by bench/push/run.ts with bench/push/_probe.ts preloaded (the same memory probe as the
 * gateway's), and by bench/push/tls-floor.ts; prints its port on stdout. Usage: bun _bare.ts SERVER.pem SERVER.key CA.pem
 *
 * @module
 */
import { readFileSync } from "node:fs";

const [cert, key, ca] = process.argv.slice(2).map((f) => readFileSync(f, "utf8"));
if (!cert || !key || !ca) throw new Error("Usage: bun _bare.ts SERVER.pem SERVER.key CA.pem");
let held = 0;
const listener = Bun.listen<{ held: boolean }>({
  hostname: "127.0.0.1",
  port: 0,
  // PUSH_BARE_LOW_MEMORY=1: Bun's lowMemoryMode (bench/push/tls-floor.ts compares it).
  tls: { cert, key, ca, requestCert: true, rejectUnauthorized: false, ...(process.env.PUSH_BARE_LOW_MEMORY === "1" ? { lowMemoryMode: true } : {}) },
  socket: {
    open(sock) {
      sock.data = { held: false };
    },
    data(sock, data) {
      // GET /hello is answered at once (bench/push/tls-floor.ts: a device's first connection, which
      // takes its TLS session ticket with the answer); any other request head is held from now on.
      if (sock.data.held || !data.includes("\r\n\r\n")) return;
      if (data.toString("latin1", 0, 11) === "GET /hello ") {
        sock.write("HTTP/1.1 204 No Content\r\n\r\n");
        return;
      }
      sock.data.held = true;
      held++;
    },
    close(sock) {
      if (sock.data?.held) held--;
    },
    error() {},
  },
});
(globalThis as { pushBenchHeld?: () => number }).pushBenchHeld = () => held;
// For bench/push/tls-floor.ts (which starts it without the probe): SIGUSR2 prints the RSS in bytes
// after two full garbage collections, one line on stdout.
if (process.env.PUSH_BARE_RSS_ON_SIGNAL === "1")
  process.on("SIGUSR2", () => {
    Bun.gc(true);
    Bun.gc(true);
    console.log(process.memoryUsage().rss);
  });
console.log(listener.port);
