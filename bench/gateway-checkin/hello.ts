/**
 * The baseline: a bare Bun.serve answering "hello" (run as its own process).
 * With mTLS by default; with a second argument, plain HTTP on that address (`127.0.0.1:0` or
 * `unix:/path`): the backend of the "HAProxy → hello" side, that topology's ceiling.
 *
 * Usage: bun hello.ts <config.json> [HOST:PORT|unix:/path]
 */
export {};
const cfg = (await Bun.file(process.argv[2]!).json()) as { cert: string; key: string; ca: string };
const plain = process.argv[3];
const fetch = () => new Response("hello");
const idleTimeout = 120; // seconds: kept-alive devices wait their turn
let server: ReturnType<typeof Bun.serve>;
if (!plain) {
  server = Bun.serve({ hostname: "127.0.0.1", port: 0, idleTimeout, tls: { cert: cfg.cert, key: cfg.key, ca: cfg.ca, requestCert: true, rejectUnauthorized: true }, fetch });
  console.error(`hello listening on https://127.0.0.1:${server.port}`);
} else if (plain.startsWith("unix:")) {
  server = Bun.serve({ unix: plain.slice(5), fetch } as Parameters<typeof Bun.serve>[0]);
  console.error(`hello listening on ${plain}`);
} else {
  const [host, port] = plain.split(":");
  server = Bun.serve({ hostname: host, port: Number(port), idleTimeout, fetch });
  console.error(`hello listening on http://${host}:${server.port}`);
}
process.on("SIGTERM", () => {
  server.stop(true);
  process.exit(0);
});
