/**
 * The gateway's own transport (gateway/transport/) answering "hello": separates the cost of
 * the transport from the app's (routing, auth, store). The answer comes from the head handler
 * (`fetchHead`: no web Request or Response), the way the gateway answers device check-ins;
 * `--fetch` answers through `fetch` with a Response instead, as every other request is answered.
 * Usage: bun hello-transport.ts <config.json> [--fetch]
 */
import { listen } from "../../gateway/transport/index.ts";

const HELLO = { status: 200, head: "content-type: text/plain;charset=utf-8\r\n", body: Buffer.from("hello") };
const cfg = (await Bun.file(process.argv[2]!).json()) as { cert: string; key: string; ca: string };
// Like the gateway with its devices: every client counts as authenticated (kept-alive deadlines, no per-address cap).
const server = await listen({
  host: "127.0.0.1",
  port: 0,
  cert: cfg.cert,
  key: cfg.key,
  clientCa: cfg.ca,
  fetch: () => new Response("hello"),
  ...(process.argv.includes("--fetch") ? {} : { fetchHead: () => HELLO }),
  admit: () => ({ authenticated: true }),
  limits: { maxConnections: 100_000 },
});
console.error(`hello listening on ${server.url}`);
process.on("SIGTERM", () => {
  void server.close(0).then(() => process.exit(0));
});
