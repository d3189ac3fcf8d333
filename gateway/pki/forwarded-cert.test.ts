import { describe, expect, setSystemTime, test } from "bun:test";
import { makeDeviceCsr } from "../../test/gateway/_device.ts";
import { createCa, issueProxyCert, signDeviceCsr } from "./ca.ts";
import { ForwardedCertVerifier } from "./forwarded-cert.ts";
import { x509 } from "../../lib/x509/eager.ts";

const ca = await createCa("main");
const dev = await makeDeviceCsr();
const { certPem } = await signDeviceCsr(ca, dev.csrPem, { uuid: dev.uuid, factory: "main" });
const der = Buffer.from(new x509.X509Certificate(certPem).rawData);

describe("ForwardedCertVerifier", () => {
  test("reads nginx's URL-encoded PEM and HAProxy's base64 DER as the same device", async () => {
    const v = new ForwardedCertVerifier(ca);
    const nginx = await v.verify(encodeURIComponent(certPem));
    const haproxy = await v.verify(der.toString("base64"));
    expect(nginx?.cn).toBe(dev.uuid);
    expect(haproxy).toEqual(nginx!);
  });

  test("refuses a certificate of another CA in either form, and garbage", async () => {
    const other = await createCa("main");
    const { certPem: foreign } = await signDeviceCsr(other, dev.csrPem, { uuid: dev.uuid, factory: "main" });
    const v = new ForwardedCertVerifier(ca);
    expect(await v.verify(encodeURIComponent(foreign))).toBeUndefined();
    expect(await v.verify(Buffer.from(new x509.X509Certificate(foreign).rawData).toString("base64"))).toBeUndefined();
    expect(await v.verify("bm90IGEgY2VydGlmaWNhdGU=")).toBeUndefined();
    expect(await v.verify("%%%")).toBeUndefined();
  });

  /**
   * A device certificate valid only between the two dates (ms from now), from the factory CA, or
   * in its name but signed with another key, or signed with its key under another issuer name.
   */
  async function issued(fromMs: number, toMs: number, by: { signingKey?: CryptoKey; issuer?: string } = {}): Promise<string> {
    const csr = new x509.Pkcs10CertificateRequest(dev.csrPem);
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: "0a1b2c",
      subject: `CN=${dev.uuid}, OU=main`,
      issuer: by.issuer ?? ca.cert.subject,
      notBefore: new Date(Date.now() + fromMs),
      notAfter: new Date(Date.now() + toMs),
      signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
      publicKey: csr.publicKey,
      signingKey: by.signingKey ?? ca.key,
    });
    return Buffer.from(cert.rawData).toString("base64");
  }

  test("says which --client-cert-header to give once per header a certificate comes in, not once in all", () => {
    const lines: string[] = [];
    const v = new ForwardedCertVerifier(ca, { warn: (line) => lines.push(line) });
    const request = (headers: Record<string, string>) => v.noticeAbsent("x-client-cert", (name) => headers[name]);
    request({ "x-ssl-client-cert": "cert" });
    request({ "x-ssl-client-cert": "cert" });
    request({ "x-ssl-cert": "cert" });
    request({ "ssl-client-cert": "cert", "x-ssl-cert": "cert" });
    request({ authorization: "Bearer t" }); // no certificate in any header (CI through the proxy): nothing to say
    expect(lines.map((l) => l.match(/Give --client-cert-header (\S+)/)?.[1])).toEqual(["x-ssl-client-cert", "x-ssl-cert", "ssl-client-cert"]);
  });

  test("refuses a certificate of ours outside its validity period, takes one inside it", async () => {
    const v = new ForwardedCertVerifier(ca);
    const day = 86_400_000;
    expect(await v.verify(await issued(-2 * day, -day))).toBeUndefined(); // expired
    expect(await v.verify(await issued(day, 2 * day))).toBeUndefined(); // not yet valid
    expect(await v.verify(await issued(-day, day))).toEqual({ cn: dev.uuid, serial: "A1B2C" });
  });

  test("a result is kept a minute (refusal) or an hour (identity) by the cache's own clock; validity is judged on the wall clock", async () => {
    let clock = 0; // the cache's monotonic clock, moved by hand
    const v = new ForwardedCertVerifier(ca, { now: () => clock });
    const real = Date.now();
    const min = 60_000;
    const expired = await issued(-86_400_000, -min);
    const ending = await issued(-86_400_000, 30 * min);
    try {
      expect(await v.verify(expired)).toBeUndefined();
      expect(await v.verify(ending)).toEqual({ cn: dev.uuid, serial: "A1B2C" });
      // This replica's clock steps back an hour: by it the expired certificate is in its validity
      // period again. The refusal is kept its minute, not the hour the wall clock went back.
      setSystemTime(new Date(real - 60 * min));
      clock += min - 1;
      expect(await v.verify(expired)).toBeUndefined();
      clock += 2;
      expect(await v.verify(expired)).toEqual({ cn: dev.uuid, serial: "A1B2C" });
      // Forward an hour instead: a cached identity whose certificate has ended by the wall clock ends with it.
      setSystemTime(new Date(real + 60 * min));
      expect(await v.verify(ending)).toBeUndefined();
    } finally {
      setSystemTime();
    }
  });

  test("refuses a certificate in the CA's name signed with another key, and one the CA's key signed under another issuer name", async () => {
    const v = new ForwardedCertVerifier(ca);
    const day = 86_400_000;
    const other = await createCa("main"); // the same subject as ours, another key
    expect(other.cert.subject).toBe(ca.cert.subject);
    expect(await v.verify(await issued(-day, day, { signingKey: other.key }))).toBeUndefined();
    expect(await v.verify(await issued(-day, day, { issuer: "CN=other factory CA, O=compose-ota, OU=main" }))).toBeUndefined();
  });

  test("a proxy certificate forwarded in the header is no device", async () => {
    const lines: string[] = [];
    const v = new ForwardedCertVerifier(ca, { warn: (line) => lines.push(line) });
    const proxy = await issueProxyCert(ca, "haproxy1");
    expect(await v.verify(encodeURIComponent(proxy.certPem))).toBeUndefined();
    expect(lines).toEqual(["gateway: refused a client certificate the proxy forwarded: it names no device (a proxy certificate, or not one CN). The device gets 401 (said once)"]);
  });

  test("says once per address that a header came from a trusted address without a proxy certificate, for at most 100 addresses", () => {
    const lines: string[] = [];
    const v = new ForwardedCertVerifier(ca, { warn: (line) => lines.push(line) });
    v.noProxyCertificate("10.0.0.5", "x-ssl-client-cert");
    v.noProxyCertificate("10.0.0.5", "x-ssl-client-cert");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toStartWith("gateway: a request came to the TLS port from 10.0.0.5, a --trust-proxy address, with x-ssl-client-cert but without a proxy certificate on its connection: x-ssl-client-cert is not believed from it");
    for (let i = 0; i < 200; i++) v.noProxyCertificate(`10.1.0.${i}`, "x-ssl-client-cert");
    expect(lines).toHaveLength(100);
    expect(lines.at(-1)).toEndWith("(said for 100 addresses; further ones are not listed)");
  });

  test("a refused proxy certificate is said once per address whatever names it claims (a client makes them up), the name cut and printable, within the 100 addresses", () => {
    const lines: string[] = [];
    const v = new ForwardedCertVerifier(ca, { warn: (line) => lines.push(line) });
    for (let i = 0; i < 50; i++) v.proxyCertRefused("10.0.0.7", `made-up-${i}\u001b[2J${"x".repeat(100)}`, "certificate has expired");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toStartWith(`gateway: the proxy certificate "made-up-0[2J${"x".repeat(52)}" the proxy at 10.0.0.7 presented on the TLS port did not verify (certificate has expired)`);
    for (let i = 0; i < 200; i++) v.proxyCertRefused(`10.2.0.${i}`, "p", "expired");
    expect(lines).toHaveLength(100);
  });
});
