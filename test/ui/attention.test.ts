/**
 * The dashboard says what needs a person, in a real browser (Debian's chromium) against real
 * gateways: a --tls-cert ending in 10 days, and root metadata ending in 20 with its key offline,
 * are on the overview with their dates and what to do, and a banner on every other page points
 * there, for an admin and a viewer alike; targets of 7 days are nothing to do while the gateway
 * holds their key (it re-signs them), and shown once the key is moved out; a healthy gateway
 * shows neither; a full disk (the data dir on a small tmpfs this file mounts and unmounts; root,
 * as the test harness runs) is shown while writes fail and gone once there is room again; with
 * PostgreSQL stopped the overview says the database is out of reach, instead of refusing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { certificateNotAfter, issueServerCert, loadCa } from "../../gateway/pki/ca.ts";
import { tufExpiryAttention } from "../../gateway/ui/attention.tsx";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { startPostgres, type PostgresHandle } from "../harness/postgres.ts";
import { run, tempDir } from "../harness/tmp.ts";
import { goto, launchChromium, signIn } from "./_browser.ts";

let browser: Browser;
const gateways: GatewayHandle[] = [];
let mnt = "";
let mounted = false;
let pg: PostgresHandle | undefined;

beforeAll(async () => {
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  for (const g of gateways) await g.stop();
  if (mounted) await run(["umount", mnt]);
  await pg?.stop();
}, 120_000);

const started = async (...args: Parameters<typeof startGateway>) => {
  const g = await startGateway(...args);
  gateways.push(g);
  return g;
};

async function viewerToken(g: GatewayHandle): Promise<string> {
  const res = await g.adminFetch("/admin/tokens", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ role: "viewer", name: "desk" }) });
  expect(res.status).toBe(201);
  return ((await res.json()) as { token: string }).token;
}

/** The overview's "Needs attention" list, item by item, as the user reads it; [] when there is none. */
const attentionItems = (page: Page) => page.locator("#attention [data-attention]").allInnerTexts();
/** The banner line of a page other than the overview, or undefined. */
const banner = async (page: Page) => ((await page.locator("#attention-banner").count()) ? page.locator("#attention-banner").innerText() : undefined);

describe("what needs a person, on the dashboard", () => {
  test("a --tls-cert ending in 10 days and root metadata in 20 with its key offline: the overview says when and what to do, every other page has a banner to it; admin and viewer", async () => {
    // A data dir (its CA, a root of 20 days) first; then the root key taken offline, as the ceremony
    // does, and the gateway again with a certificate of 10 days from that CA.
    const first = await started({ args: ["--tuf-expiry", "root=20d"] });
    await first.stop();
    gateways.pop();
    rmSync(join(first.dataDir, "tuf", "keys", "root.json"));
    const pki = join(first.dataDir, "pki");
    const ca = await loadCa(readFileSync(join(pki, "ca.pem"), "utf8"), readFileSync(join(pki, "ca.key"), "utf8"));
    const cert = await issueServerCert(ca, ["127.0.0.1"], { validDays: 10 });
    const dir = await tempDir("attention-cert-");
    writeFileSync(join(dir, "tls.pem"), cert.certPem);
    writeFileSync(join(dir, "tls.key"), cert.keyPem);
    const g = await started({ dataDir: first.dataDir, args: ["--tls-cert", join(dir, "tls.pem"), "--tls-key", join(dir, "tls.key")] });
    const end = certificateNotAfter(cert.certPem).toISOString();
    const root = ((await (await g.adminFetch("/repo/root.json")).json()) as { signed: { expires: string } }).signed.expires;
    const said = [
      `Soon: The gateway's TLS certificate expires at ${end} (in 10 days): devices cannot connect after that; ` +
        "put a renewed certificate in the --tls-cert and --tls-key files and restart gateway serve.",
      `Soon: The TUF root metadata expires at ${root} (in 20 days): devices take no update after that; ` +
        "sign a new version with a threshold of the offline root keys before then (gateway keys init-root, sign-root, push-root: docs/keys.md).",
    ];

    for (const token of [g.adminToken, await viewerToken(g)]) {
      const { ctx, page } = await signIn(browser, g.url, token);
      expect(await page.getByRole("heading", { name: "Needs attention" }).isVisible()).toBe(true);
      expect(await attentionItems(page)).toEqual(said);
      expect(await banner(page)).toBeUndefined(); // the overview lists it; no banner above the list
      for (const path of ["/ui/devices", "/ui/tokens"]) {
        await goto(page, `${g.url}${path}`);
        expect(await banner(page)).toBe("Needs attention: TLS certificate, TUF root metadata. See the overview.");
      }
      await page.getByRole("link", { name: /Needs attention/ }).click();
      await page.waitForURL(`${g.url}/ui/#attention`);
      expect(await attentionItems(page)).toEqual(said);
      await ctx.close();
    }
  }, 120_000);

  test("targets of 7 days (--tuf-expiry) with the targets key online: nothing to do, the gateway re-signs them; the key moved out: the overview says to put it back", async () => {
    const g = await started({ args: ["--tuf-expiry", "targets=7d"] });
    const expires = ((await (await g.adminFetch("/repo/targets.json")).json()) as { signed: { expires: string } }).signed.expires;
    expect(Date.parse(expires) - Date.now()).toBeLessThan(7 * 86_400_000); // within the month a ceremony is planned in
    const { ctx, page } = await signIn(browser, g.url, g.adminToken);
    expect(await page.getByRole("heading", { name: "Devices by status" }).isVisible()).toBe(true);
    expect(await attentionItems(page)).toEqual([]);
    await goto(page, `${g.url}/ui/devices`);
    expect(await banner(page)).toBeUndefined();

    // Taken offline (docs/keys.md, "Targets signed offline"): now a person must bring it back before then.
    const key = join(g.dataDir, "tuf", "keys", "targets.json");
    const held = readFileSync(key);
    rmSync(key);
    await goto(page, `${g.url}/ui/`);
    expect(await attentionItems(page)).toEqual([
      `Soon: The TUF targets metadata expires at ${expires} (in 7 days): devices take no update after that; ` +
        "put a targets key file in the data dir's tuf/keys/ before then: the gateway re-signs targets with it within minutes (docs/keys.md).",
    ]);
    await goto(page, `${g.url}/ui/devices`);
    expect(await banner(page)).toBe("Needs attention: TUF targets metadata. See the overview.");
    // Back: the notice goes without a restart.
    writeFileSync(key, held, { mode: 0o600 });
    await goto(page, `${g.url}/ui/`);
    expect(await attentionItems(page)).toEqual([]);
    // A keys dir that cannot be read signs nothing either: the same notice, not none.
    const keys = join(g.dataDir, "tuf", "keys");
    renameSync(keys, `${keys}.aside`);
    writeFileSync(keys, "");
    await goto(page, `${g.url}/ui/`);
    expect(await attentionItems(page)).toEqual([expect.stringContaining("the gateway cannot read its keys to re-sign it (")]);
    rmSync(keys);
    renameSync(`${keys}.aside`, keys);
    await ctx.close();
  }, 120_000);

  test("targets whose key the gateway holds, half their re-signing margin gone without a new signature: re-signing fails, and the notice says where to look", () => {
    // A 7-day lifetime: re-signed 1.75 days before expiry (a quarter, gateway/ota/repo.ts).
    const day = 86_400_000;
    const signing = { held: true, marginMs: 1.75 * day };
    const now = Date.parse("2026-12-06T00:00:00Z");
    const targets = (left: number) => ({ role: "targets" as const, expires: new Date(now + left).toISOString(), ms: now + left });
    expect(tufExpiryAttention(targets(1.75 * day), signing, now)).toBeUndefined(); // due now: the next check re-signs it
    expect(tufExpiryAttention(targets(0.9 * day), signing, now)).toBeUndefined(); // late (a signer taking over), not failing
    expect(tufExpiryAttention(targets(0.5 * day), signing, now)?.text).toBe(
      "The TUF targets metadata expires at 2026-12-06T12:00:00.000Z (in 1 days): devices take no update after that; " +
        'the gateway holds the targets key but has not re-signed it, due since 2026-12-04T18:00:00.000Z: its log says why ("cannot refresh TUF metadata").',
    );
  });

  test("a healthy gateway shows nothing; a full disk is shown while writes fail, and goes once there is room", async () => {
    mnt = join(await tempDir("attention-disk-"), "small");
    mkdirSync(mnt);
    expect((await run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt])).code).toBe(0);
    mounted = true;
    const g = await started({ dataDir: join(mnt, "data") });
    const { ctx, page } = await signIn(browser, g.url, g.adminToken);
    expect(await page.getByRole("heading", { name: "Devices by status" }).isVisible()).toBe(true);
    expect(await attentionItems(page)).toEqual([]);
    expect(await page.getByText("Needs attention").count()).toBe(0);
    await goto(page, `${g.url}/ui/devices`);
    expect(await banner(page)).toBeUndefined();

    // Fill the file system, then a write: refused for want of space (507), which starts the spell.
    const ballast = join(mnt, "ballast");
    await run(["sh", "-c", `dd if=/dev/zero of=${ballast} bs=1M count=64 2>/dev/null; true`]);
    let status = 0;
    for (let i = 0; i < 20 && status !== 507; i++) {
      const res = await g.adminFetch("/admin/tokens", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: `fill-${i}` }) });
      status = res.status;
    }
    expect(status).toBe(507);

    await goto(page, `${g.url}/ui/devices`);
    expect(await banner(page)).toBe("Needs attention: disk space. See the overview.");
    await goto(page, `${g.url}/ui/`);
    const [disk, ...rest] = await attentionItems(page);
    expect(rest).toEqual([]);
    expect(disk).toMatch(
      new RegExp(
        `^Now: Writes have failed for want of disk space since \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z \\(data ${join(mnt, "data")}: 0 B free, registry .*\\): ` +
          "device reports, registrations and uploads are refused and sent again later\\. Free space there \\(gateway registry gc --untargeted removes what no target uses\\); " +
          "the gateway takes writes again by itself\\.$",
      ),
    );
    // The fleet is still shown below it: reads work.
    expect(await page.getByRole("heading", { name: "Devices by status" }).isVisible()).toBe(true);

    // Room again: the gateway sees it within its 5 s check, and the page, refreshing itself, drops the notice.
    rmSync(ballast);
    await page.locator("#attention").waitFor({ state: "detached", timeout: 30_000 });
    expect(await attentionItems(page)).toEqual([]);
    await ctx.close();
  }, 120_000);

  test("the database out of reach: the overview says so and what to do, instead of refusing the page", async () => {
    pg = await startPostgres();
    const g = await started({ db: await pg.createDatabase("attention_outage") });
    const { ctx, page } = await signIn(browser, g.url, g.adminToken);
    expect(await attentionItems(page)).toEqual([]);
    await pg.stop();
    await goto(page, `${g.url}/ui/`);
    expect(await attentionItems(page)).toEqual([
      `Now: The gateway's database is out of reach ("Cannot reach the gateway's database (connection refused): try again later"). ` +
        "Devices are answered 503 and try again; these pages show the fleet again once it answers. " +
        "Check that the database server runs and that the gateway reaches it (its log says since when it does not).",
    ]);
    expect(await page.getByRole("heading", { name: "Devices by status" }).count()).toBe(0);
    await ctx.close();
  }, 120_000);
});
