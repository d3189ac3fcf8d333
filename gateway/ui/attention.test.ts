/** The overview's "Needs attention" items for the factory CA's end (the browser tests in test/ui/attention.test.ts cover how they show). */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { testGateway } from "../../test/gateway/_fixture.ts";
import { needsAttention } from "./attention.tsx";

let t: Awaited<ReturnType<typeof testGateway>>;
beforeAll(async () => {
  t = await testGateway();
});
afterAll(async () => {
  await t?.close();
});

const DAY = 86_400_000;

test("the factory CA's last month is said, and the served certificate ending with it is said by the CA's item alone", async () => {
  const now = Date.now();
  const m = t.gw.metrics;
  m.tlsCertificateOwn = true;
  m.caCertificateNotAfter = now + 10 * DAY;
  m.tlsCertificateNotAfter = now + 10 * DAY; // issued capped at the CA's end
  const items = await needsAttention(t.gw, undefined, now);
  expect(items.map((a) => a.id)).toEqual(["ca"]);
  expect(items[0]!.text).toContain("The factory CA (pki/ca.pem) expires at");
  expect(items[0]!.text).toContain("a restart does not help");
  // A served certificate ending before the CA: both, each with its own advice.
  m.tlsCertificateNotAfter = now + 5 * DAY;
  expect((await needsAttention(t.gw, undefined, now)).map((a) => a.id).sort()).toEqual(["ca", "certificate"]);
  // Far from its end: nothing.
  m.caCertificateNotAfter = m.tlsCertificateNotAfter = now + 400 * DAY;
  expect(await needsAttention(t.gw, undefined, now)).toEqual([]);
});

test("the signer failing to re-sign is said with its error: soon while the timestamp holds, now once it has expired", async () => {
  const now = Date.now();
  const m = t.gw.metrics;
  m.caCertificateNotAfter = m.tlsCertificateNotAfter = now + 400 * DAY;
  t.gw.tufFailing = () => ({ since: now - 60_000, error: "Cannot sign TUF timestamp metadata with /data/tuf/keys: not there" });
  try {
    const [item, ...rest] = await needsAttention(t.gw, undefined, now);
    expect(rest).toEqual([]);
    expect(item!.id).toBe("tuf-signing");
    expect(item!.severity).toBe("warn");
    expect(item!.text).toContain(`since ${new Date(now - 60_000).toISOString()}: Cannot sign TUF timestamp metadata with /data/tuf/keys: not there.`);
    expect(item!.text).toMatch(/Devices refuse the timestamp once it expires, at \d{4}-/);
    // A day later the served timestamp (a day's life by default) has expired: it hurts now.
    const later = await needsAttention(t.gw, undefined, now + 2 * DAY);
    const signing = later.find((a) => a.id === "tuf-signing")!;
    expect(signing.severity).toBe("bad");
    expect(signing.text).toContain("devices take no update until it is signed again");
  } finally {
    t.gw.tufFailing = undefined;
  }
  expect(await needsAttention(t.gw, undefined, now)).toEqual([]);
});
