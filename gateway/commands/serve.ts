import { UsageError, defineCommand } from "../../lib/cli/command.ts";
import { startGatewayServer } from "../gateway.ts";

export default defineCommand({
  summary: "Run the gateway: device API, TUF repository, registry and admin API on one HTTPS port",
  description: [
    "The first start initialises DIR: factory CA and TLS certificate (pki/), admin token (admin-token, mode 0600),",
    "TUF keys (tuf/keys/) and metadata, the sqlite database (gateway.db) unless --db is given. Later starts reuse it.",
    "",
    "Devices authenticate with client certificates issued by the factory CA at registration. Behind a",
    "TLS-terminating proxy, pass --trust-proxy with the proxy's addresses: the client certificate it forwards",
    "in --client-cert-header (URL-encoded PEM) is honoured from those addresses only, and is still checked",
    "against the factory CA and the device's revocation.",
  ].join("\n"),
  flags: {
    data: { type: "string", description: "Data directory (created on first start)", placeholder: "DIR" },
    listen: { type: "string", description: "Address to listen on; port 0 picks a free one", default: "127.0.0.1:8443", placeholder: "HOST:PORT" },
    db: { type: "string", description: "Database: postgres://... (default: DIR/gateway.db, sqlite)", placeholder: "URL" },
    "public-url": { type: "string", description: "https://host:port devices and CI use (default: the listen address)", placeholder: "URL" },
    factory: { type: "string", description: "Factory name, fixed at first start (default: main)", placeholder: "NAME" },
    "tls-cert": { type: "string", description: "Use this PEM server certificate instead of one issued by the factory CA", placeholder: "FILE" },
    "tls-key": { type: "string", description: "Key of --tls-cert", placeholder: "FILE" },
    "trust-proxy": { type: "string", description: "Proxy addresses whose forwarded client certificate is trusted", placeholder: "CIDRS" },
    "client-cert-header": { type: "string", description: "Header carrying the forwarded client certificate", default: "x-client-cert", placeholder: "NAME" },
    "polling-seconds": { type: "string", description: "Polling interval written into new devices' sota.toml", default: "300", placeholder: "N" },
  },
  async run({ flags, out }) {
    if (!flags.data) throw new UsageError("--data DIR is required");
    if (Boolean(flags["tls-cert"]) !== Boolean(flags["tls-key"])) throw new UsageError("--tls-cert and --tls-key go together");
    const polling = Number(flags["polling-seconds"]);
    if (!Number.isInteger(polling) || polling < 1) throw new UsageError("--polling-seconds must be a positive integer");
    const running = await startGatewayServer({
      dataDir: flags.data,
      listen: flags.listen,
      ...(flags.db ? { db: flags.db } : {}),
      ...(flags["public-url"] ? { publicUrl: flags["public-url"] } : {}),
      ...(flags.factory ? { factory: flags.factory } : {}),
      ...(flags["tls-cert"] ? { tlsCert: await Bun.file(flags["tls-cert"]).text(), tlsKey: await Bun.file(flags["tls-key"]!).text() } : {}),
      ...(flags["trust-proxy"] ? { trustProxy: flags["trust-proxy"] } : {}),
      clientCertHeader: flags["client-cert-header"],
      pollingSeconds: polling,
      log: (line) => out.info(line),
    });
    await new Promise<void>((resolve) => {
      const stop = (sig: string) => {
        out.info(`gateway: ${sig}: stopping`);
        process.off("SIGTERM", onTerm).off("SIGINT", onInt);
        resolve();
      };
      const onTerm = () => stop("SIGTERM");
      const onInt = () => stop("SIGINT");
      process.on("SIGTERM", onTerm).on("SIGINT", onInt);
    });
    await running.stop();
    out.info("gateway: stopped");
  },
});
