/**
 * The factory CA ends (20 years after the first start), and with it every chain it signed: no
 * device accepts the gateway after that, and no restart helps. So nothing the CA issues outlives
 * it (a later end would put the alert on the served certificate after the fleet is gone), the log
 * says the CA's end from 30 days before, and /metrics shows it. A real gateway, restarted under
 * libfaketime with its clock ten days before its CA's end (the test itself keeps the real clock).
 */
import { afterAll, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:tls";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { tempDir } from "../harness/tmp.ts";

const ARCH = process.arch === "arm64" ? "aarch64" : "x86_64";
const LIBFAKETIME = `/usr/lib/${ARCH}-linux-gnu/faketime/libfaketime.so.1`;
const DAY = 86_400_000;

let gw: GatewayHandle | undefined;
afterAll(() => gw?.stop(), 60_000);

/** libfaketime's settings for a clock `offsetMs` ahead of the real one (test/clock/wrong-clock.test.ts says why these). */
async function clockAhead(offsetMs: number): Promise<Record<string, string>> {
  const file = join(await tempDir("faketime-"), "offset");
  writeFileSync(file, `+${Math.round(offsetMs / 1000)}s\n`);
  return { LD_PRELOAD: LIBFAKETIME, FAKETIME_TIMESTAMP_FILE: file, FAKETIME_NO_CACHE: "1", FAKETIME_DONT_FAKE_MONOTONIC: "1" };
}

/**
 * The end of the certificate served at `url`. Not verified: on the test's real clock the gateway's
 * certificate, issued on its clock 20 years ahead, is not valid yet.
 */
function servedNotAfter(url: string): Promise<number> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const s = connect({ host: hostname, port: Number(port), rejectUnauthorized: false }, () => {
      const c = s.getPeerCertificate();
      s.destroy();
      resolve(Date.parse(c.valid_to));
    });
    s.on("error", reject);
  });
}

async function metrics(g: GatewayHandle): Promise<string> {
  const res = await fetch(`${g.url}/metrics`, { headers: { authorization: `Bearer ${g.adminToken}` }, tls: { rejectUnauthorized: false } } as RequestInit);
  expect(res.status).toBe(200);
  return res.text();
}

test("ten days before the CA's end: the served certificate ends with the CA, the log says the CA's end, /metrics shows it, a restart keeps the certificate", async () => {
  if (!existsSync(LIBFAKETIME)) throw new Error(`${LIBFAKETIME} is missing: install Debian's faketime (scripts/setup.sh)`);
  gw = await startGateway();
  const dataDir = gw.dataDir;
  const caEnd = new X509Certificate(gw.caPem).validToDate;
  await gw.stop();
  gw = undefined;

  // Ten days before the CA's end its server certificate (five years) has long expired: the start renews it.
  // A minute less than ten days left, so the whole seconds libfaketime takes cannot make it read "in 11 days".
  const clock = await clockAhead(caEnd.getTime() - 10 * DAY + 60_000 - Date.now());
  gw = await startGateway({ dataDir, env: clock });
  const serverPem = readFileSync(join(dataDir, "pki", "server.pem"), "utf8");
  expect(new X509Certificate(serverPem).validToDate.toISOString()).toBe(caEnd.toISOString());
  expect(new Date(await servedNotAfter(gw.url)).toISOString()).toBe(caEnd.toISOString());

  const log = readFileSync(gw.logFile, "utf8");
  expect(log).toContain(
    `gateway: warning: the factory CA (pki/ca.pem) expires at ${caEnd.toISOString()} (in 10 days): from then every device refuses the gateway's certificate and the gateway every device's, ` +
      `and a restart does not help; nothing renews the CA: move the fleet to a gateway with a new one before then (docs/keys.md, "The factory CA")`,
  );
  // Not the served certificate's own warning, whose remedy (a restart) would not help.
  expect(log).not.toContain("warning: the gateway's TLS certificate");
  const text = await metrics(gw);
  const seconds = Math.floor(caEnd.getTime() / 1000);
  expect(text).toContain(`\ngateway_ca_certificate_expiry_timestamp_seconds ${seconds}\n`);
  // The documented alert on the served certificate fires as well: it no longer outlives the CA.
  expect(text).toContain(`\ngateway_tls_certificate_expiry_timestamp_seconds ${seconds}\n`);
  await gw.stop();
  gw = undefined;

  // Less than a year is left of it, but a new one would end at the same time: kept, not reissued at every start.
  gw = await startGateway({ dataDir, env: clock });
  expect(readFileSync(join(dataDir, "pki", "server.pem"), "utf8")).toBe(serverPem);
  expect(readFileSync(gw.logFile, "utf8")).not.toContain("issued a new TLS certificate");
}, 120_000);
