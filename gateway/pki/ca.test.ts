import { describe, expect, test } from "bun:test";
import { x509 } from "../../lib/x509/eager.ts";
import { caFingerprint } from "../../lib/tls/pin.ts";
import { makeDeviceCsr } from "../../test/gateway/_device.ts";
import { X509Certificate } from "node:crypto";
import { CaEndedError, CsrRejectedError, certificateHosts, certificateNotAfter, createCa, issueProxyCert, issueServerCert, loadCa, signDeviceCsr } from "./ca.ts";
import { deviceIdentity, proxyName } from "./keys.ts";

describe("factory CA", () => {
  test("signDeviceCsr() issues CN=uuid, OU=factory, signed by the CA", async () => {
    const ca = await createCa("acme");
    const dev = await makeDeviceCsr();
    const issued = await signDeviceCsr(ca, dev.csrPem, { uuid: dev.uuid, factory: "acme" });
    const cert = new x509.X509Certificate(issued.certPem);
    expect(cert.subjectName.getField("CN")).toEqual([dev.uuid]);
    expect(cert.subjectName.getField("OU")).toEqual(["acme"]);
    expect(await cert.verify({ publicKey: ca.cert.publicKey })).toBe(true);
    expect(issued.serial).toMatch(/^[1-7][0-9A-F]{31}$/);
  });

  test("signDeviceCsr() refuses a CSR whose CN is not the uuid", async () => {
    const ca = await createCa("acme");
    const dev = await makeDeviceCsr(crypto.randomUUID(), "acme", "someone-else");
    await expect(signDeviceCsr(ca, dev.csrPem, { uuid: dev.uuid, factory: "acme" })).rejects.toThrow(CsrRejectedError);
    await expect(signDeviceCsr(ca, "garbage", { uuid: dev.uuid, factory: "acme" })).rejects.toThrow(CsrRejectedError);
  });

  test("issueServerCert() covers IPs and names, and a CA reloads from PEM with the same pin", async () => {
    const ca = await createCa("main");
    const srv = await issueServerCert(ca, ["127.0.0.1", "gw.example.com"]);
    expect(certificateHosts(srv.certPem).sort()).toEqual(["127.0.0.1", "gw.example.com"]);
    const again = await loadCa(ca.certPem, ca.keyPem);
    expect(again.fingerprint).toBe(ca.fingerprint);
    expect(ca.fingerprint).toMatch(/^[0-9a-f]{64}$/);
    // The pin a token carries is the one a client (fioup register, publish) checks /ca.pem against.
    expect(ca.fingerprint).toBe(caFingerprint(ca.certPem));
  });

  test("a proxy certificate names its proxy and no device; a device certificate names no proxy", async () => {
    const ca = await createCa("main");
    const proxy = await issueProxyCert(ca, "haproxy1", { validDays: 30 });
    const p = new X509Certificate(proxy.certPem);
    expect(p.checkIssued(new X509Certificate(ca.certPem))).toBe(true);
    expect(proxyName(p)).toBe("haproxy1");
    expect(deviceIdentity(p)).toBeNull();
    expect(p.validToDate.getTime()).toBe(proxy.notAfter.getTime());
    const dev = await makeDeviceCsr();
    const d = new X509Certificate((await signDeviceCsr(ca, dev.csrPem, { uuid: dev.uuid, factory: "main" })).certPem);
    expect(proxyName(d)).toBeNull();
    expect(deviceIdentity(d)?.cn).toBe(dev.uuid);
    await expect(issueProxyCert(ca, "../etc")).rejects.toThrow('Invalid proxy name "../etc"');
  });

  test("nothing the CA issues outlives it: server, device and proxy certificates end by the CA's end", async () => {
    const DAY = 86_400_000;
    // A CA ten days from its end, as one is 20 years after the first start.
    const ca = await createCa("main", { validDays: 10 });
    const caEnd = ca.cert.notAfter.getTime();
    const dev = await makeDeviceCsr();
    const issued = {
      server: certificateNotAfter((await issueServerCert(ca, ["127.0.0.1"])).certPem).getTime(),
      device: certificateNotAfter((await signDeviceCsr(ca, dev.csrPem, { uuid: dev.uuid, factory: "main" })).certPem).getTime(),
      proxy: (await issueProxyCert(ca, "haproxy1")).notAfter.getTime(),
    };
    expect(issued).toEqual({ server: caEnd, device: caEnd, proxy: caEnd });
    // One shorter than what is left of the CA keeps its own end.
    const short = certificateNotAfter((await issueServerCert(ca, ["127.0.0.1"], { validDays: 5 })).certPem).getTime();
    expect(Math.abs(short - (Date.now() + 5 * DAY))).toBeLessThan(60_000);
  });

  test("a CA that has ended issues nothing, and says so", async () => {
    const ended = await createCa("main", { validDays: 0 });
    await Bun.sleep(1100);
    const dev = await makeDeviceCsr();
    await expect(signDeviceCsr(ended, dev.csrPem, { uuid: dev.uuid, factory: "main" })).rejects.toThrow(CaEndedError);
    await expect(issueServerCert(ended, ["127.0.0.1"])).rejects.toThrow(`The factory CA ended at ${ended.cert.notAfter.toISOString()}: it issues no certificate`);
    await expect(issueProxyCert(ended, "haproxy1")).rejects.toThrow(CaEndedError);
  });
});
