import { describe, expect, test } from "bun:test";
import { makeDeviceCsr } from "../../test/gateway/_device.ts";
import { createCa, signDeviceCsr } from "./ca.ts";
import { ForwardedCertVerifier } from "./forwarded-cert.ts";
import { x509 } from "./x509.ts";

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
});
