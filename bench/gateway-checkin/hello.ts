/** The baseline: a bare Bun.serve with mTLS answering "hello" (run as its own process). Usage: bun hello.ts <config.json> */
export {};
const cfg = (await Bun.file(process.argv[2]!).json()) as { cert: string; key: string; ca: string };
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  idleTimeout: 120, // seconds: kept-alive devices wait their turn
  tls: { cert: cfg.cert, key: cfg.key, ca: cfg.ca, requestCert: true, rejectUnauthorized: true },
  fetch: () => new Response("hello"),
});
console.error(`hello listening on https://127.0.0.1:${server.port}`);
process.on("SIGTERM", () => {
  server.stop(true);
  process.exit(0);
});
