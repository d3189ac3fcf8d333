/**
 * The baseline: a bare Bun.serve answering "hello" (run as its own process).
 * With mTLS by default; with a second argument, plain HTTP on that address (`127.0.0.1:0` or
 * `unix:/path`): the backend of the "HAProxy > hello" side, that topology's ceiling. With
 * `--listener` as well, the gateway's plain listener (gateway/transport/plain.ts: trusted-proxy
 * check, forwarded certificate verified against the data dir's CA, admission hook, held-request
 * bookkeeping) with a handler answering "hello" to a request that came with a verified device
 * certificate (401 without, but for GET /healthz): what the plain listener costs beyond Bun.serve, without the app.
 *
 * Usage: bun hello.ts <config.json> [HOST:PORT|unix:/path [--listener]]
 */
import { openDataDir } from "../../gateway/data-dir.ts";
import { ForwardedCertVerifier } from "../../gateway/pki/forwarded-cert.ts";
import { listenPlain, parseProxyListen } from "../../gateway/transport/plain.ts";
import { TrustedProxies } from "../../gateway/trusted-proxies.ts";

const cfg = (await Bun.file(process.argv[2]!).json()) as { cert: string; key: string; ca: string; dataDir: string };
const plain = process.argv[3];
const fetch = () => new Response("hello");
const idleTimeout = 120; // seconds: kept-alive devices wait their turn
let stop: () => unknown;
if (!plain) {
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, idleTimeout, tls: { cert: cfg.cert, key: cfg.key, ca: cfg.ca, requestCert: true, rejectUnauthorized: true }, fetch });
  console.error(`hello listening on https://127.0.0.1:${server.port}`);
  stop = () => server.stop(true);
} else if (process.argv[4] === "--listener") {
  const data = await openDataDir(cfg.dataDir, { hosts: ["127.0.0.1"] });
  const listening = await listenPlain({
    address: parseProxyListen(plain),
    trustedProxies: new TrustedProxies("127.0.0.1"),
    clientCertHeader: "x-ssl-client-cert",
    forwardedCerts: new ForwardedCertVerifier(data.ca),
    admit: (_req, env) => ({ authenticated: env.peer !== undefined }),
    fetch: async (req, env) => {
      if (req.body) await req.arrayBuffer();
      // The proxy's health check comes without a certificate.
      return env.peer || new URL(req.url).pathname === "/healthz" ? new Response("hello") : new Response("no verified certificate", { status: 401 });
    },
  });
  console.error(`hello listening on ${listening.url}`);
  stop = () => listening.close(0);
} else if (plain.startsWith("unix:")) {
  const server = Bun.serve({ unix: plain.slice(5), fetch } as Parameters<typeof Bun.serve>[0]);
  console.error(`hello listening on ${plain}`);
  stop = () => server.stop(true);
} else {
  const [host, port] = plain.split(":");
  const server = Bun.serve({ hostname: host, port: Number(port), idleTimeout, fetch });
  console.error(`hello listening on http://${host}:${server.port}`);
  stop = () => server.stop(true);
}
process.on("SIGTERM", async () => {
  await stop();
  process.exit(0);
});
