/**
 * The TLS certificate the gateway serves must never end under a fleet unnoticed: every device
 * refuses an expired one. A start renews the gateway's own certificate when less than a year is
 * left; a certificate near its end (its own, or one given with --tls-cert) is said in the log and
 * shown on /metrics. The factory CA's end is said and shown the same way (./ca-expiry.test.ts).
 */
import { afterEach, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { connect } from "node:tls";
import { join } from "node:path";
import { startGatewayServer, type RunningGateway } from "../../gateway/gateway.ts";
import { certificateNotAfter, issueServerCert } from "../../gateway/pki/ca.ts";
import { caExpiryWarning, certificateExpiryWarning } from "../../gateway/pki/cert-expiry.ts";
import { tempDir } from "../harness/tmp.ts";
import { tlsFetch } from "./_client.ts";

const DAY = 86_400_000;
let running: RunningGateway | undefined;
afterEach(async () => {
  await running?.stop();
  running = undefined;
});

/** The certificate a TLS client is served at `url`, verified against `ca` as a device does. */
async function servedCert(url: string, ca: string): Promise<{ notAfter: number; serial: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const s = connect({ host: hostname, port: Number(port), ca }, () => {
      const c = s.getPeerCertificate();
      s.destroy();
      resolve({ notAfter: Date.parse(c.valid_to), serial: c.serialNumber });
    });
    s.on("error", reject);
  });
}

const start = async (dir: string, extra: Partial<Parameters<typeof startGatewayServer>[0]> = {}) => {
  const logs: string[] = [];
  running = await startGatewayServer({ dataDir: dir, listen: "127.0.0.1:0", log: (l) => logs.push(l), ...extra });
  return { gw: running, logs };
};

test("a start renews the gateway's own certificate when less than a year of it is left, and devices take the new one", async () => {
  const dir = join(await tempDir("cert-expiry-"), "data");
  const first = await start(dir);
  const ca = first.gw.data.ca;
  const url = first.gw.url;
  await first.gw.stop();
  running = undefined;

  /** Starts again on the same port with a certificate of `validDays` in the data dir. */
  const restartWith = async (validDays: number) => {
    const cert = await issueServerCert(ca, ["127.0.0.1"], { validDays });
    writeFileSync(join(dir, "pki", "server.pem"), cert.certPem);
    writeFileSync(join(dir, "pki", "server.key"), cert.keyPem);
    return { cert, ...(await start(dir, { listen: new URL(url).host })) };
  };

  // Two years left: kept as it is.
  const { cert: keep, ...kept } = await restartWith(730);
  expect(kept.gw.data.serverCertPem).toBe(keep.certPem);
  expect(kept.logs.join("\n")).not.toContain("issued a new TLS certificate");
  await kept.gw.stop();
  running = undefined;

  // Twenty days left: a new one, five years long, served to devices that trust the same CA.
  const { cert: old, ...renewed } = await restartWith(20);
  const served = await servedCert(renewed.gw.url, ca.certPem);
  expect(served.notAfter).toBeGreaterThan(Date.now() + 4 * 365 * DAY);
  expect(served.notAfter).toBe(certificateNotAfter(renewed.gw.data.serverCertPem).getTime());
  const oldEnd = certificateNotAfter(old.certPem).toISOString();
  expect(renewed.logs.join("\n")).toContain(`gateway: issued a new TLS certificate from the factory CA, valid until ${new Date(served.notAfter).toISOString()}: less than a year was left of the old one (it ends at ${oldEnd})`);
  expect(renewed.logs.join("\n")).not.toContain("warning: the gateway's TLS certificate");
  const metrics = await (await tlsFetch({ ca: ca.certPem })(`${renewed.gw.url}/metrics`)).text();
  expect(metrics).toContain(`gateway_tls_certificate_expiry_timestamp_seconds ${Math.floor(served.notAfter / 1000)}`);
}, 120_000);

test("a --tls-cert near its end is said at start, with what to do, and shown on /metrics", async () => {
  const dir = join(await tempDir("cert-expiry-"), "data");
  const first = await start(dir);
  const ca = first.gw.data.ca;
  await first.gw.stop();
  running = undefined;
  const given = await issueServerCert(ca, ["127.0.0.1"], { validDays: 10 });
  const { gw, logs } = await start(dir, { tlsCert: given.certPem, tlsKey: given.keyPem });
  const end = certificateNotAfter(given.certPem);
  expect(logs).toContain(
    `gateway: warning: the gateway's TLS certificate expires at ${end.toISOString()} (in 10 days): devices cannot connect after that; ` +
      "put a renewed certificate in the --tls-cert and --tls-key files and restart gateway serve",
  );
  const metrics = await (await tlsFetch({ ca: ca.certPem })(`${gw.url}/metrics`)).text();
  expect(metrics).toContain(`gateway_tls_certificate_expiry_timestamp_seconds ${Math.floor(end.getTime() / 1000)}`);
}, 120_000);

test("the warning starts 30 days before the end and says when it has passed", () => {
  const now = Date.parse("2030-01-01T00:00:00Z");
  const at = (days: number) => new Date(now + days * DAY);
  expect(certificateExpiryWarning(at(31), true, now)).toBeUndefined();
  expect(certificateExpiryWarning(at(30), true, now)).toBe(
    "gateway: warning: the gateway's TLS certificate expires at 2030-01-31T00:00:00.000Z (in 30 days): devices cannot connect after that; " +
      "restart gateway serve, which issues a new one from the factory CA (devices trust it as they trust the old one)",
  );
  expect(certificateExpiryWarning(at(-1), false, now)).toBe(
    "gateway: warning: the gateway's TLS certificate expired at 2029-12-31T00:00:00.000Z: devices refuse it and cannot connect; " +
      "put a renewed certificate in the --tls-cert and --tls-key files and restart gateway serve",
  );
  expect(caExpiryWarning(at(31), now)).toBeUndefined();
  expect(caExpiryWarning(at(30), now)).toStartWith("gateway: warning: the factory CA (pki/ca.pem) expires at 2030-01-31T00:00:00.000Z (in 30 days): ");
  expect(caExpiryWarning(at(-1), now)).toStartWith("gateway: warning: the factory CA (pki/ca.pem) expired at 2029-12-31T00:00:00.000Z: ");
});
