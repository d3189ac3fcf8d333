import { statSync } from "node:fs";
import { UsageError, asUsage, defineCommand } from "../../lib/cli/command.ts";
import { commaList } from "../../lib/cli/comma-list.ts";
import { readPemFlagFile } from "../../lib/cli/flag-file.ts";
import { abortOnStopSignals } from "../../lib/cli/interrupt.ts";
import { emptyStart, putBackEmpty } from "../../lib/fs/paths.ts";
import { MAX_POLLING_SECONDS } from "../../lib/device/sota-toml.ts";
import { parseTufExpiries } from "../ota/role-flag.ts";
import { InvalidFactoryNameError } from "../data-dir.ts";
import { DataDirMismatchError, InvalidListenError, startGatewayServer } from "../gateway.ts";
import { dbKind, dbKindProblem, StoreOpenError } from "../store/open.ts";
import { TOKEN } from "../transport/http1.ts";
import { DEFAULT_CLIENT_CERT_HEADER, DEFAULT_LIMITS } from "../transport/index.ts";
import { checkProxyListen, InvalidProxyListenError, parseProxyListen } from "../transport/plain.ts";
import { InvalidCidrError, TrustedProxies } from "../trusted-proxies.ts";
import { InvalidDurationError, parseDuration } from "../../lib/api/duration.ts";
import { DEFAULT_KEEP_EVENTS } from "../event-retention.ts";
import { checkDataFlagToMake } from "./_data-flag.ts";

/**
 * A flag holding a positive number (seconds may have a fraction) up to `max`, and at least `least`
 * seconds where less would do harm (the caller says why); the caller names the flag in the error.
 * The upper bound matters for seconds: past setTimeout's 24.8 days a timer fires at once, and a
 * renewal or tick that fires at once runs in a busy loop.
 */
function positive(flag: string, value: string, integer: boolean, max: number, least?: { seconds: number; why: string }): number {
  const n = Number(value);
  if (!/^[0-9]+(\.[0-9]+)?$/.test(value) || !(n > 0) || (integer && !Number.isInteger(n)))
    throw new UsageError(`--${flag} must be a positive ${integer ? "integer" : "number"}, got "${value}"`);
  if (n > max) throw new UsageError(`--${flag} must be at most ${max}, got "${value}"`);
  if (least && n < least.seconds)
    throw new UsageError(`--${flag} must be at least ${least.seconds} second${least.seconds === 1 ? "" : "s"}, got "${value}": ${least.why}`);
  return n;
}

/**
 * The least a connection timeout may be: the head timeout runs from connect, TLS handshake
 * included, and a device on a slow or lossy link (cellular, a satellite hop) needs round trips
 * of hundreds of milliseconds for that; below a second every such device is cut off each time,
 * and with a fraction such as 0.0001 every client is.
 */
const MIN_TIMEOUT = { seconds: 1, why: "shorter cuts off devices on slow links before they can send a request; the defaults suit most fleets" };

/** --keep-events: a duration, or "forever" (null: nothing is removed). */
function keepEvents(value: string): { ms: number; shown: string } | null {
  if (value === "forever") return null;
  try {
    return { ms: parseDuration(value, { unitRequired: true }) * 1000, shown: value };
  } catch (e) {
    if (e instanceof InvalidDurationError) throw new UsageError(`--keep-events ${e.message.replace(/^Invalid duration /, "")}, or "forever"`);
    throw e;
  }
}

const HOUR = 3600;
const DAY = 86_400;
/** Connection counts: far past what one process can hold, only to refuse a typo's extra digits. */
const MAX_CONNECTIONS = 10_000_000;

export default defineCommand({
  summary: "Run the gateway: device API, TUF repository, registry and admin API on one HTTPS port",
  description: [
    "The first start initialises DIR: factory CA and TLS certificate (pki/), admin token (admin-token, mode 0600),",
    "TUF keys (tuf/keys/) and metadata, the sqlite database (gateway.db) unless --db is given. Later starts reuse it.",
    "",
    "Devices authenticate with client certificates issued by the factory CA at registration. Behind a",
    "TLS-terminating proxy, pass --trust-proxy with the proxy's addresses: the client certificate it forwards",
    "in --client-cert-header (nginx's URL-encoded PEM or HAProxy's base64 DER) is honoured from those addresses only, and is still checked",
    "against the factory CA and the device's revocation. On this HTTPS port the proxy must also present a proxy certificate",
    "(`gateway proxy-cert`) on its hop: from a connection without one the header is ignored.",
    "",
    "--proxy-listen ADDR adds a plain-HTTP listener for that proxy (HOST:PORT, or unix:/path on the same host),",
    "so the hop from the proxy costs no second TLS session. Use it only on a private network or the same host:",
    "a TCP address needs --trust-proxy, and a request from any other address is refused (403) unread; a unix",
    "socket is trusted, its file permissions decide who may connect. Identities come only from the forwarded",
    "certificate header, checked as on the TLS port.",
    "",
    "Slow or idle clients: a client without a valid certificate or token has --head-timeout seconds to send a",
    "request head (from connect, TLS handshake included) and --body-timeout seconds for the body; authenticated",
    "clients may be idle or stall for --idle-timeout seconds. A request to a device endpoint without a device",
    "certificate, or to /admin or /v2 without a token, is answered 401 before its body is read. Past",
    "--max-connections, or --max-connections-per-address unauthenticated ones from one address (trusted proxies",
    "exempt), the oldest unauthenticated connection is closed; past --max-connections with none left, the",
    "connection idle longest (a kept-alive one between requests; never a held push wait).",
  ].join("\n"),
  flags: {
    data: { type: "string", description: "Data directory (created on first start: a new or empty folder, or the data dir an earlier start made)", placeholder: "DIR" },
    listen: { type: "string", description: "Address to listen on; port 0 picks a free one", default: "127.0.0.1:8443", placeholder: "HOST:PORT" },
    db: {
      type: "string",
      description:
        "Database: postgres://USER@HOST:PORT/DB (the password in the URL or in PGPASSWORD) or a SQLite file (default: DIR/gateway.db; a data dir once served with PostgreSQL needs it every start)",
      placeholder: "URL|FILE",
    },
    "public-url": { type: "string", description: "https://host:port devices and CI use (default: the listen address; for 0.0.0.0 or ::, this machine's hostname)", placeholder: "URL" },
    factory: { type: "string", description: "Factory name, fixed at first start (default: main)", placeholder: "NAME" },
    "tls-cert": { type: "string", description: "Use this PEM server certificate instead of one issued by the factory CA", placeholder: "FILE" },
    "tls-key": { type: "string", description: "Key of --tls-cert", placeholder: "FILE" },
    "trust-proxy": { type: "string", description: "Proxy addresses whose forwarded client certificate is trusted (proxies that terminate TLS only: never one in TCP mode; on the HTTPS port only with a proxy certificate)", placeholder: "CIDRS", allowEmpty: true },
    "proxy-listen": { type: "string", description: "Also serve plain HTTP to the trusted proxies here (needs --trust-proxy unless unix:)", placeholder: "HOST:PORT|unix:PATH" },
    "client-cert-header": { type: "string", description: "Header carrying the forwarded client certificate", default: DEFAULT_CLIENT_CERT_HEADER, placeholder: "NAME" },
    "head-timeout": { type: "string", description: "Seconds an unauthenticated client has to send a request head (at least 1)", default: String(DEFAULT_LIMITS.headTimeoutMs / 1000), placeholder: "SECONDS" },
    "body-timeout": { type: "string", description: "Seconds an unauthenticated client has to send a request body (at least 1)", default: String(DEFAULT_LIMITS.bodyTimeoutMs / 1000), placeholder: "SECONDS" },
    "idle-timeout": { type: "string", description: "Seconds an authenticated client may be idle or stall (at least 1)", default: String(DEFAULT_LIMITS.idleTimeoutMs / 1000), placeholder: "SECONDS" },
    "max-connections": { type: "string", description: "Open connections in all (lowered, and logged, to fit the open-file limit)", default: String(DEFAULT_LIMITS.maxConnections), placeholder: "N" },
    "max-connections-per-address": { type: "string", description: "Unauthenticated connections from one address", default: String(DEFAULT_LIMITS.maxConnectionsPerAddress), placeholder: "N" },
    "registry-dir": {
      type: "string",
      description: "Embedded registry storage (default DIR/registry); replicas share one (on PostgreSQL the first start marks it, and a replica given another is refused)",
      placeholder: "DIR",
    },
    "external-registry-service": {
      type: "string",
      description: "Issue tokens for an external registry whose auth.token.service is NAME (deploy/docker-registry/config.yml); on PostgreSQL every replica the same",
      placeholder: "NAME",
      allowEmpty: true,
    },
    "registry-change": {
      type: "boolean",
      description:
        "The fleet's registry changes on purpose (PostgreSQL): record this start's --registry-dir or --external-registry-service as the one every replica serves, replacing the database's record; refused while another replica serves",
    },
    "polling-seconds": { type: "string", description: "Polling interval written into new devices' sota.toml", default: "300", placeholder: "N" },
    "rollout-tick": { type: "string", description: "Seconds between rollout checks (halt, advance, complete) on the signer replica", default: "5", placeholder: "SECONDS" },
    "signer-lease": {
      type: "string",
      description: "Seconds the signer role (TUF re-signing, rollout checks) outlives a replica that stopped renewing it: a replica, or a restarted single gateway, takes it over within about 1.3 times this (at least 1; 1.3 times it should stay under a quarter of the timestamp's --tuf-expiry)",
      default: "6",
      placeholder: "SECONDS",
    },
    "keep-events": {
      type: "string",
      description: `Remove device events received longer ago than this (e.g. 90d, 52w), on the signer replica once an hour; "forever" keeps them all`,
      default: DEFAULT_KEEP_EVENTS,
      placeholder: "DURATION",
    },
    "metrics-per-device": {
      type: "boolean",
      description:
        'Count the registry bytes each device downloaded apart on /metrics (gateway_registry_bytes_served_total{client="device:UUID"}): a series per device, held until the gateway stops, with device ids readable by whoever reads /metrics; for tests and small fleets (default: all devices as client="device")',
    },
    "tuf-expiry": { type: "strings", description: "Lifetime of a TUF role's metadata, e.g. timestamp=1h, at least 2s (defaults root=365d targets=365d snapshot=7d timestamp=1d)", placeholder: "ROLE=DURATION" },
  },
  async run({ flags, out }) {
    if (!flags.data) throw new UsageError("--data DIR is required");
    // A SQLite --db and a --registry-dir may be kept in the data dir under names of their own.
    const sqliteDb = flags.db && dbKind(flags.db) === "sqlite" ? [flags.db] : [];
    await checkDataFlagToMake(flags.data, [...sqliteDb, ...(flags["registry-dir"] ? [flags["registry-dir"]] : [])]);
    if (Boolean(flags["tls-cert"]) !== Boolean(flags["tls-key"])) throw new UsageError("--tls-cert and --tls-key go together");
    if (flags.db && !dbKind(flags.db)) throw new UsageError(dbKindProblem(flags.db));
    // The registry makes its directory when it first stores a blob: a file there would fail only then.
    if (flags["registry-dir"] && statSync(flags["registry-dir"], { throwIfNoEntry: false })?.isDirectory() === false)
      throw new UsageError(`--registry-dir ${flags["registry-dir"]} is a file, not a folder`);
    // Each of these, mistyped, still started a gateway that quietly did less: a header name no
    // request can carry (every device behind the proxy answered 401), an empty --trust-proxy (no
    // forwarded certificate believed), an empty --external-registry-service (no tokens for it).
    if (!TOKEN.test(flags["client-cert-header"]))
      throw new UsageError(`Invalid --client-cert-header "${flags["client-cert-header"]}": expected a header name such as x-ssl-client-cert (no spaces or colon)`);
    if (flags["trust-proxy"] !== undefined && !commaList(flags["trust-proxy"]).length)
      throw new UsageError("--trust-proxy is empty: give the proxy's addresses (e.g. 10.0.0.5 or 10.0.0.0/24), or leave the flag out");
    // Checked here, before the proxy listener's check (which exited 1 on it) and before the log
    // says it takes certificates from these addresses.
    if (flags["trust-proxy"]) asUsage([InvalidCidrError], () => new TrustedProxies(flags["trust-proxy"]));
    if (flags["external-registry-service"] !== undefined && !flags["external-registry-service"].trim())
      throw new UsageError("--external-registry-service is empty: give the registry's auth.token.service name, or leave the flag out");
    // With an external registry there is no embedded one: a --registry-dir given too was made and
    // watched for space, never used, and nothing said so.
    if (flags["external-registry-service"] !== undefined && flags["registry-dir"] !== undefined)
      throw new UsageError(
        "--registry-dir and --external-registry-service name two registries: the gateway serves the embedded one (--registry-dir) or issues tokens for an external one, not both; give one",
      );
    // A header for proxies that are not trusted: no forwarded certificate is read at all, and every
    // proxied device got 401 with nothing in the log (--trust-proxy forgotten).
    if (flags["client-cert-header"] !== DEFAULT_CLIENT_CERT_HEADER && !flags["trust-proxy"] && !flags["proxy-listen"]?.startsWith("unix:"))
      throw new UsageError(
        `--client-cert-header ${flags["client-cert-header"]} is read only from trusted proxies: give --trust-proxy with the proxy's addresses (or --proxy-listen unix:PATH), or leave the flag out`,
      );
    if (flags["proxy-listen"]) {
      // The listener's own check, before anything starts.
      try {
        checkProxyListen(parseProxyListen(flags["proxy-listen"]), new TrustedProxies(flags["trust-proxy"]));
      } catch (e) {
        if (e instanceof InvalidProxyListenError) throw new UsageError(e.message);
        throw e;
      }
    }
    // Which header the replica reads, said once at start: every proxy config in deploy/ sends
    // X-SSL-Client-Cert and deletes the default X-Client-Cert, so a replica left on the default
    // answers every proxied device 401 ("no verified client certificate") with nothing in its log.
    if (flags["trust-proxy"] || flags["proxy-listen"]?.startsWith("unix:")) {
      const header = flags["client-cert-header"].toLowerCase();
      out.info(
        `gateway: taking device certificates that ${flags["trust-proxy"] ? `proxies at ${flags["trust-proxy"]}` : "the proxy on the unix socket"} forward in ${header}` +
          (header === DEFAULT_CLIENT_CERT_HEADER ? " (the proxy configs in deploy/ send x-ssl-client-cert: for them, give --client-cert-header x-ssl-client-cert)" : ""),
      );
    }
    // Behind a proxy the public URL is the proxy's: without it the replica names itself in its
    // certificate and in the registry's token realm, an address devices may not reach.
    if ((flags["trust-proxy"] || flags["proxy-listen"]) && !flags["public-url"])
      out.info(
        "gateway: warning: behind a proxy (--trust-proxy, --proxy-listen) without --public-url: this replica names its own --listen address " +
          "in its certificate and registry token realm, which devices reach only through the proxy; give --public-url with the proxy's URL",
      );
    const polling = positive("polling-seconds", flags["polling-seconds"], true, MAX_POLLING_SECONDS);
    // The lease is renewed every third of it by a database write: under a second, a renewal's own
    // round trip can outlast it, and then no replica ever holds the role and nothing is re-signed.
    const signerLeaseMs =
      positive("signer-lease", flags["signer-lease"], false, HOUR, { seconds: 1, why: "a renewal's own database round trip could outlast a shorter lease" }) * 1000;
    const tufExpiries = parseTufExpiries(flags["tuf-expiry"]);
    // A timestamp is re-signed a quarter of its lifetime before it expires; a takeover after the
    // signer dies takes up to about 1.3 leases, so a shorter margin lets devices see it expire.
    if (tufExpiries.timestamp !== undefined && (tufExpiries.timestamp * 1000) / 4 <= (signerLeaseMs * 4) / 3)
      out.info(
        `gateway: warning: timestamps live ${tufExpiries.timestamp} s and are re-signed ${tufExpiries.timestamp / 4} s before they expire, ` +
          `less than a signer takeover (up to ${((signerLeaseMs * 4) / 3000).toFixed(1)} s with --signer-lease ${signerLeaseMs / 1000}): ` +
          "devices may see an expired timestamp when the signer dies",
      );
    const limits = {
      headTimeoutMs: positive("head-timeout", flags["head-timeout"], false, DAY, MIN_TIMEOUT) * 1000,
      bodyTimeoutMs: positive("body-timeout", flags["body-timeout"], false, DAY, MIN_TIMEOUT) * 1000,
      idleTimeoutMs: positive("idle-timeout", flags["idle-timeout"], false, DAY, MIN_TIMEOUT) * 1000,
      maxConnections: positive("max-connections", flags["max-connections"], true, MAX_CONNECTIONS),
      maxConnectionsPerAddress: positive("max-connections-per-address", flags["max-connections-per-address"], true, MAX_CONNECTIONS),
    };
    // A replica started on a new folder instead of a copy of the first replica's data dir makes a
    // CA of its own, which the shared database then refuses: that folder is removed again, so
    // copying the right one there afterwards is not mixed with a CA nobody uses.
    const dataDir = flags.data;
    const madeHere = emptyStart(dataDir);
    // A flag value the server refuses before it makes anything is bad usage (exit 2), as the checks above.
    const running = await startGatewayServer({
      dataDir: flags.data,
      listen: flags.listen,
      ...(flags.db ? { db: flags.db } : {}),
      ...(flags["public-url"] ? { publicUrl: flags["public-url"] } : {}),
      ...(flags.factory ? { factory: flags.factory } : {}),
      ...(flags["tls-cert"] ? { tlsCert: await readPemFlagFile(flags["tls-cert"], "--tls-cert"), tlsKey: await readPemFlagFile(flags["tls-key"]!, "--tls-key") } : {}),
      ...(flags["trust-proxy"] ? { trustProxy: flags["trust-proxy"] } : {}),
      clientCertHeader: flags["client-cert-header"],
      ...(flags["proxy-listen"] ? { proxyListen: flags["proxy-listen"] } : {}),
      pollingSeconds: polling,
      tufExpiries,
      ...(flags["registry-dir"] ? { registryDir: flags["registry-dir"] } : {}),
      ...(flags["external-registry-service"] ? { externalRegistryService: flags["external-registry-service"] } : {}),
      ...(flags["registry-change"] ? { registryChange: true } : {}),
      limits,
      rolloutTickMs: positive("rollout-tick", flags["rollout-tick"], false, HOUR) * 1000,
      keepEvents: keepEvents(flags["keep-events"]),
      ...(flags["metrics-per-device"] ? { metricsPerDevice: true } : {}),
      signerLeaseMs,
      log: (line) => out.info(line),
    }).catch(async (e: unknown) => {
      if (e instanceof DataDirMismatchError && madeHere) {
        putBackEmpty(dataDir, madeHere);
        // The same error, told more: its class is what callers and the exit-code table match on.
        e.message =
          `${e.message}. A replica's --data must be a copy of the first replica's data dir (its CA and keys; gateway/README.md, Replicas): ` +
          `copy it to ${dataDir}; a gateway of its own needs a database of its own. The CA and keys this start made there were removed.`;
        throw e;
      }
      // A --db refused (another program's SQLite file, PostgreSQL unreachable): the folder this start made goes too.
      if (e instanceof StoreOpenError && madeHere) putBackEmpty(dataDir, madeHere);
      if (e instanceof InvalidListenError || e instanceof InvalidProxyListenError || e instanceof InvalidCidrError || e instanceof InvalidFactoryNameError) throw new UsageError(e.message);
      throw e;
    });
    // The first SIGTERM or SIGINT stops the gateway; once it is said, another one ends the process.
    const stop = abortOnStopSignals("stopped", "ends");
    await new Promise((resolve) => stop.signal.addEventListener("abort", resolve, { once: true }));
    out.info(`gateway: ${stop.received}: stopping`);
    stop.release();
    await running.stop();
    out.info("gateway: stopped");
  },
});
