/**
 * The gateway's transport: `Bun.listen` terminates TLS (client certificates
 * requested, not required, verified against the device CA) and a small
 * HTTP/1.1 server turns each request into a web `Request` for the app (or
 * hands the parsed head to the app's optional head handler first: the device
 * check-ins, where a `Request` and a `Response` cost more than the work). The
 * verified peer certificate (or, from a trusted proxy that presented a proxy
 * certificate, the forwarded one: below) is passed as `env.peer`. Nothing here
 * knows the app: it is a `fetch` function plus optional admission and head
 * hooks, so another transport can replace this one.
 *
 * Why not Bun.serve: it cannot hand the client certificate to a handler
 * (oven-sh/bun#14097). Why not node:http over node:tls: it ran at a quarter of
 * Bun.serve (two TLS writes per answer) and buffered whole uploads in memory.
 * Here an answer with a small body is one write, and a request body is a
 * stream that pauses the socket when the handler falls behind.
 *
 * TLS sessions resume (TLS 1.3 tickets, 48 h lifetime hint; TLS 1.2 tickets and
 * session IDs, 2 h): a resumed connection keeps the identity of the certificate
 * verified in the full handshake it came from (the peer certificate and
 * `authorized` are restored from the session), so `env.peer` is the same device
 * and the app's per-request checks (registered, not revoked) still apply. The
 * ticket key is random per process: resumption works per replica and until a
 * restart (Bun cannot be given shared ticket keys, oven-sh/bun#14604).
 *
 * Slow clients: each connection has one deadline at a time (connection.ts);
 * a sweep a few times a second cuts the ones past it (connection-set.ts, shared
 * with the plain port for a proxy, plain.ts). Unauthenticated clients
 * get short ones (head, whole body), authenticated ones an idle/stall limit.
 *
 * @module
 */
import type { Socket, TCPSocketListener } from "bun";
import { deviceIdentity, proxyName } from "../pki/keys.ts";
import type { Connection } from "./connection.ts";
import { ConnectionCaps, connectionBudget } from "./connection-caps.ts";
import { ConnectionSet } from "./connection-set.ts";
import { DEFAULT_CLIENT_CERT_HEADER, DEFAULT_LIMITS, listenError, type Listening, type TransportLimits, type TransportOptions } from "./options.ts";
import { urlHost } from "./url.ts";

export function listen(opts: TransportOptions): Promise<Listening> {
  const limits: TransportLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  // No address is exempt from the per-address cap here: a proxy that proves itself with its
  // certificate is authenticated at its handshake (below) and so never counts against it, and a
  // client without one from a trusted address (through a proxy in TCP mode) is any client.
  const caps = new ConnectionCaps(limits.maxConnections, limits.maxConnectionsPerAddress, undefined, opts.connectionBudget ?? connectionBudget());
  // Behind a proxy (--trust-proxy), a request's identity may come in a certificate header. On this
  // port an address alone does not earn that: a proxy in TCP mode passes any client's TLS through
  // from its address, so a client without a certificate could name any device in the header. So
  // the header is believed only from a connection that presented a proxy certificate (issued by
  // `gateway proxy-cert`, marked as keys.ts says) from a trusted address; any other is taken by
  // its own TLS identity, and when such a client sends the header from a trusted address, the
  // operator is told once per address (forwarded-cert.ts). The plain listener (plain.ts) trusts
  // the address alone: it is meant for a proxy on a private network, loopback or a unix socket,
  // and speaks no TLS that could carry a certificate.
  const trusted = opts.trustedProxies;
  const header = opts.clientCertHeader ?? DEFAULT_CLIENT_CERT_HEADER;
  const set = new ConnectionSet(
    {
      ...opts,
      forwards: (c) => c.proxy !== undefined,
      unbelieved: (c, sent) => {
        if (trusted?.has(c.remoteAddr) && sent()) opts.forwardedCerts?.noProxyCertificate(c.remoteAddr, header);
      },
    },
    limits,
    caps,
  );
  let handshakes = 0;
  let resumed = 0;

  // The X509Certificate form, not getPeerCertificate(): that one builds a whole object per
  // connection (about 21 µs against 3 µs here, measured on resumed connections).
  const certOf = (sock: Socket<Connection>) => (sock.authorized ? sock.getPeerX509Certificate() : undefined);

  return new Promise((resolve, reject) => {
    let listener: TCPSocketListener<Connection>;
    try {
      listener = Bun.listen<Connection>({
        hostname: opts.host,
        port: opts.port,
        tls: { cert: opts.cert, key: opts.key, ca: opts.clientCa, requestCert: true, rejectUnauthorized: false },
        socket: {
          // With a handshake handler, open runs at accept, before the TLS handshake: the head deadline covers the handshake too.
          open(sock) {
            const c = set.open(sock, sock.remoteAddress);
            if (c) sock.data = c;
          },
          handshake(sock) {
            const c = sock.data;
            if (!c || c.closed) return;
            handshakes++;
            if (sock.isSessionReused()) resumed++;
            const cert = certOf(sock);
            c.peer = cert ? deviceIdentity(cert) : null;
            if (!c.peer && trusted?.has(c.remoteAddr)) {
              if (cert) c.proxy = proxyName(cert) ?? undefined;
              else if (!sock.authorized) {
                // A proxy certificate that did not verify (expired, another CA's): said, as every device behind that proxy now gets 401.
                const presented = sock.getPeerX509Certificate();
                const name = presented ? proxyName(presented) : null;
                if (name !== null) opts.forwardedCerts?.proxyCertRefused(c.remoteAddr, name, sock.getAuthorizationError()?.message ?? "it did not verify");
              }
            }
            // A device, or a proxy that proved itself: the lenient deadlines, and never taken for an unauthenticated client at a cap.
            caps.handshaken(c, c.peer !== null || c.proxy !== undefined, c.peer?.cn);
            if (c.peer || c.proxy !== undefined) {
              c.authenticated = true;
              set.loop.awaitHead(c);
            }
          },
          data(sock, data) {
            if (sock.data) set.loop.onData(sock.data, data);
          },
          drain(sock) {
            sock.data?.flush();
          },
          close(sock) {
            if (sock.data) set.closed(sock.data);
          },
          error() {
            // a failed handshake or reset is the client's problem, not a crash; close follows
          },
        },
      });
    } catch (err) {
      set.abandon();
      reject(listenError(err, `${urlHost(opts.host)}:${opts.port}`));
      return;
    }
    const host = urlHost(listener.hostname);
    resolve({
      host: listener.hostname,
      port: listener.port,
      url: `https://${host}:${listener.port}`,
      stats: () => ({ open: set.conns.size, unauthenticated: caps.unauthenticated, capped: caps.capped, timedOut: set.timedOut, handshakes, resumed, held: caps.held, holdsRefused: caps.holdsRefused, maxConnections: caps.maxConnections }),
      close: (graceMs = 10_000) => {
        listener.stop(false);
        return set.close(graceMs);
      },
    });
  });
}
