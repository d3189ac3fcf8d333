import { expect, test } from "bun:test";
import { once } from "node:events";
import { createServer, type AddressInfo } from "node:net";
import { loadX509 } from "../x509/index.ts";
import { toPem } from "../x509/pem.ts";
import { isCertificateTimeError, isLinkFailure, LINK_FAILURE_CODES, netWhy, proxyWithoutBackend } from "./why.ts";

/** A loopback port nobody listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = createServer().listen(0, "127.0.0.1");
  await once(s, "listening");
  const port = (s.address() as AddressInfo).port;
  s.close();
  await once(s, "close");
  return port;
}

test("a refused connection and a server that never answers are said in words", async () => {
  const refused = await fetch(`http://127.0.0.1:${await closedPort()}/`).catch((e) => e);
  expect(netWhy(refused)).toBe("connection refused (is it running at that address?)");

  const silent = createServer(() => {}).listen(0, "127.0.0.1"); // accepts, never answers
  await once(silent, "listening");
  try {
    const late = await fetch(`http://127.0.0.1:${(silent.address() as AddressInfo).port}/`, { signal: AbortSignal.timeout(200) }).catch((e) => e);
    expect(netWhy(late)).toBe("no answer in time");
  } finally {
    silent.close();
  }
  expect(netWhy(new Error("certificate has expired"))).toBe("certificate has expired"); // no code: its own words
});

test("only a proxy's 502, 503 and 504 say no server is up behind it; the server's own 500 and 501 do not", () => {
  expect([500, 501, 502, 503, 504, 505].filter(proxyWithoutBackend)).toEqual([502, 503, 504]);
});

/** A TLS server on loopback whose self-signed certificate is valid only from `notBefore` to `notAfter`. */
async function tlsServerValid(notBefore: Date, notAfter: Date) {
  const x509 = await loadX509();
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = (await crypto.subtle.generateKey(alg, true, ["sign", "verify"])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: "01", name: "CN=127.0.0.1", notBefore, notAfter, signingAlgorithm: alg, keys,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: "ip", value: "127.0.0.1" }])],
  });
  const key = toPem(await crypto.subtle.exportKey("pkcs8", keys.privateKey), "PRIVATE KEY");
  const pem = cert.toString("pem");
  const server = Bun.serve({ port: 0, hostname: "127.0.0.1", tls: { cert: pem, key }, fetch: () => new Response("ok") });
  return { url: `https://127.0.0.1:${server.port}/`, ca: pem, stop: () => server.stop(true) };
}

test("a certificate not valid yet, or expired, by this machine's clock is said with what the clock reads and to set the time", async () => {
  const day = 86400_000;
  const future = await tlsServerValid(new Date(Date.now() + 365 * day), new Date(Date.now() + 730 * day)); // what a clock in 1970 sees
  const past = await tlsServerValid(new Date(Date.now() - 730 * day), new Date(Date.now() - 365 * day)); // what a clock years ahead sees
  try {
    const notYet = await fetch(future.url, { tls: { ca: future.ca } }).catch((e) => e);
    expect(netWhy(notYet)).toMatch(
      /^the server's certificate is not valid yet by this machine's clock, which reads \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: the clock is likely wrong \(a device without a battery-backed clock starts in 1970 until NTP sets it\); set the time \(enable NTP: timedatectl set-ntp true\) and try again$/,
    );
    expect(isCertificateTimeError(notYet)).toBe(true);
    const expired = await fetch(past.url, { tls: { ca: past.ca } }).catch((e) => e);
    expect(isCertificateTimeError(expired)).toBe(true);
    expect(isCertificateTimeError(new Error("certificate has expired"))).toBe(false);
    expect(netWhy(expired)).toMatch(
      /^the server's certificate has expired by this machine's clock, which reads \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: if that is not the time, set the time \(enable NTP: timedatectl set-ntp true\) and try again; if it is, the server's certificate must be renewed$/,
    );
  } finally {
    future.stop();
    past.stop();
  }
});

test("a refused, cut or timed-out connection is a link failure; a TLS refusal by the clock or an answer is not", async () => {
  const refused = await fetch(`http://127.0.0.1:${await closedPort()}/`).catch((e) => e);
  expect(isLinkFailure(refused)).toBe(true);
  const closing = createServer((s) => s.destroy()).listen(0, "127.0.0.1"); // accepts, then hangs up
  await once(closing, "listening");
  try {
    const cut = await fetch(`http://127.0.0.1:${(closing.address() as AddressInfo).port}/`).catch((e) => e);
    expect(isLinkFailure(cut)).toBe(true);
  } finally {
    closing.close();
  }
  expect(isLinkFailure(Object.assign(new Error("timed out"), { name: "TimeoutError" }))).toBe(true);
  for (const code of LINK_FAILURE_CODES) expect(isLinkFailure(Object.assign(new Error(code), { code }))).toBe(true);
  expect(isLinkFailure(Object.assign(new Error("expired"), { code: "CERT_HAS_EXPIRED" }))).toBe(false);
  expect(isLinkFailure(new Error("ECONNREFUSED in the text only"))).toBe(false);
  expect(isLinkFailure(undefined)).toBe(false);
});
