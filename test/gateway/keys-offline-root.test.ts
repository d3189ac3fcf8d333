/**
 * The offline root ceremony with the real CLI against a real `gateway serve` over TLS
 * (docs/keys.md): keys made with `gateway keys generate` outside the data dir, the next root
 * drafted with `init-root`, signed with `sign-root`, installed with `push-root`. Then the
 * gateway, restarted with neither the root nor the targets key in its data dir, keeps serving
 * signed metadata that a registered device verifies with its TUF client, re-signing timestamp
 * and snapshot on its own (their lifetimes shortened so the test covers several of each).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir, readdir, rename, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { RegistrationResponse } from "../../lib/api/index.ts";
import { parseMetadata, verifyAndLoadTargets } from "../../lib/tuf/index.ts";
import { loadKeyFile } from "../../lib/tuf/keys.ts";
import { expiresAt } from "../../lib/tuf/metadata.ts";
import { draftNextRoot, signRoot } from "../../lib/tuf/root-ceremony.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { run, tempDir } from "../harness/tmp.ts";
import { targetEntry } from "../tuf/_repo-server.ts";
import { makeDeviceCsr } from "./_device.ts";

const MAIN = resolve(import.meta.dir, "../../gateway/main.ts");
const cli = (...args: string[]) => run([process.execPath, MAIN, ...args], { allowFail: true });
const entry = (version: number) => targetEntry(version, "amd64-linux");

let gw: GatewayHandle;
let offline: string;
let device: { dir: string; tls: { ca: string; cert: string; key: string } };

async function register(): Promise<typeof device> {
  const k = await makeDeviceCsr();
  const res = await gw.adminFetch("/devices", {
    method: "POST",
    headers: { authorization: `Bearer ${gw.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "d", uuid: k.uuid, csr: k.csrPem, "hardware-id": "amd64-linux", tags: ["main"] }),
  });
  expect(res.status).toBe(201);
  const body = (await res.json()) as RegistrationResponse;
  const dir = join(offline, `device-${k.uuid}`);
  await mkdir(dir);
  await writeFile(join(dir, "root.json"), JSON.stringify(body.root));
  return { dir, tls: { ca: body.ca, cert: body.certificate, key: k.keyPem } };
}
const verify = (d: typeof device) => verifyAndLoadTargets({ metadataDir: d.dir, metadataBaseUrl: `${gw.url}/repo/`, fetch: { tls: d.tls } });
const deviceRoot = async (d: typeof device) => parseMetadata("root", await Bun.file(join(d.dir, "root.json")).text()).signed;
const keysDir = () => join(gw.dataDir, "tuf", "keys");

beforeAll(async () => {
  gw = await startGateway();
  offline = await tempDir("offline-keys-");
}, 120_000);

afterAll(async () => {
  await gw?.stop();
}, 60_000);

describe("gateway keys: the offline root ceremony", () => {
  test("a root that would expire within a week is refused by init-root and by POST /admin/keys/root, which installs nothing", async () => {
    // Installed, a root of a minute left every device failing its check ("Final root.json is expired") 55 s later.
    for (const short of ["1s", "1m", "6d"]) {
      const r = await cli("keys", "init-root", "--data", gw.dataDir, "--expires", short, "--out", join(offline, "short", "2.root.json"));
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(new RegExp(`^gateway keys init-root: --expires ${short}: the new root expires at \\S+, less than 7d from now: a root must live at least 7d, since once it expires every device refuses every update`));
    }
    expect(await Bun.file(join(offline, "short", "1.root.json")).exists()).toBe(false);
    // Signed by the root key the gateway holds, so only its lifetime is wrong.
    const current = await (await gw.adminFetch("/admin/keys/root")).text();
    const draft = draftNextRoot(current, { expires: expiresAt(new Date(), 60) });
    const signed = signRoot(draft, await loadKeyFile(join(keysDir(), "root.json")), current);
    const res = await gw.adminFetch("/admin/keys/root", { method: "POST", headers: { "content-type": "application/json" }, body: new TextDecoder().decode(signed) });
    expect({ status: res.status, body: await res.json() }).toEqual({
      status: 400,
      body: { error: expect.stringMatching(/^Cannot install root\.json: it expires at \S+, less than 7d from now: a root must live at least 7d/) },
    });
    expect(parseMetadata("root", await (await gw.adminFetch("/admin/keys/root")).text()).signed.version).toBe(1);
    // The least lifetime itself drafts.
    const week = await cli("keys", "init-root", "--data", gw.dataDir, "--expires", "7d", "--out", join(offline, "week", "2.root.json"));
    expect([week.code, week.stderr]).toEqual([0, ""]);
  });

  test("a root moved to 2 of 3 offline keys is refused with one holder's signature and installed with two", async () => {
    device = await register(); // trusts root v1, signed by the online root key
    expect((await deviceRoot(device)).version).toBe(1);
    for (const who of ["alice", "bob", "carol"]) expect((await cli("keys", "generate", "--out", join(offline, who))).code).toBe(0);

    const init = await cli("keys", "init-root", "--data", gw.dataDir, "--format", "json", "--out", join(offline, "2.root.json"),
      ...["alice", "bob", "carol"].flatMap((w) => ["--key", `root=${join(offline, `${w}.pub.json`)}`]), "--threshold", "root=2");
    expect(init.code).toBe(0);
    expect(JSON.parse(init.stdout)).toMatchObject({ version: 2, roles: { root: { threshold: 2 } }, previousRoot: { threshold: 1 } });

    // The current (online) root key signs its successor once; then it is never needed again.
    const sign = (key: string) => cli("keys", "sign-root", join(offline, "2.root.json"), "--key", key, "--format", "json");
    expect((await sign(join(keysDir(), "root.json"))).code).toBe(0);
    const one = await sign(join(offline, "alice.json"));
    expect(JSON.parse(one.stdout)).toMatchObject({ alreadySigned: false });
    // Alice signing again by mistake is said, and still counts once.
    const twice = await cli("keys", "sign-root", join(offline, "2.root.json"), "--key", join(offline, "alice.json"));
    expect(twice.code).toBe(0);
    expect(twice.stdout).toContain("(it had signed already: its signature is renewed, it counts once)");
    expect(twice.stdout).toContain("new root keys     : 1 of 2 needed");

    // Drafting again by mistake must not throw away the signatures collected so far, nor write beside a directory.
    const signedDraft = await Bun.file(join(offline, "2.root.json")).text();
    const again = await cli("keys", "init-root", "--data", gw.dataDir, "--out", join(offline, "2.root.json"), "--key", `root=${join(offline, "carol.pub.json")}`);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain(`Cannot use ${join(offline, "2.root.json")}: it exists (a draft may hold signatures already)`);
    expect(await Bun.file(join(offline, "2.root.json")).text()).toBe(signedDraft);
    const intoDir = await cli("keys", "init-root", "--data", gw.dataDir, "--out", offline, "--key", `root=${join(offline, "carol.pub.json")}`);
    expect(intoDir.code).toBe(2);
    expect(intoDir.stderr).toContain(`Cannot use ${offline}: it is a directory`);
    expect(JSON.parse(one.stdout)).toMatchObject({ ready: false, thresholds: [{ of: "new", threshold: 2, met: false }, { of: "previous", met: true }] });
    const refused = await cli("keys", "push-root", "--data", gw.dataDir, join(offline, "2.root.json"));
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/403: Cannot install root\.json: it is not signed by 2 of the 3 new root keys/);

    const two = await sign(join(offline, "bob.json"));
    expect(JSON.parse(two.stdout)).toMatchObject({ ready: true });
    const pushed = await cli("keys", "push-root", "--data", gw.dataDir, join(offline, "2.root.json"));
    expect(pushed.stderr).toBe("");
    expect(pushed.stdout).toMatch(/root\.json is now version 2/);
    expect(await readdir(keysDir())).not.toContain("root.json");
  });

  test("no token can rotate root, and online keys cannot rotate while root is offline", async () => {
    // The gateway itself refuses (the CLI refuses "root" before asking, so ask the API directly).
    const root = await gw.adminFetch("/admin/keys/rotate", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ role: "root" }) });
    expect({ status: root.status, body: await root.text() }).toEqual({ status: 403, body: expect.stringContaining("Root rotation needs the offline root key") });
    expect((await cli("keys", "rotate", "root", "--data", gw.dataDir)).stderr).toContain("the root key is not rotated here");
    // Refused, naming where the root keys are missing (no one file: three keys), and how such a rotation is done.
    const ts = await cli("keys", "rotate", "timestamp", "--data", gw.dataDir);
    expect(ts.code).toBe(3);
    expect(ts.stderr).toContain(`409: Cannot sign TUF root metadata with ${keysDir()}: none of the 3 root keys root.json trusts is there (offline?).`);
    expect(ts.stderr).toContain(
      "With the root key offline, the timestamp key changes by a root signed offline: on the gateway, gateway keys generate --out DIR/tuf/keys/timestamp-2; " +
        "then gateway keys init-root --key timestamp=DIR/tuf/keys/timestamp-2.pub.json, sign-root by the root key holders, push-root (docs/keys.md)",
    );
  });

  test("restarted with no root and no targets key, it keeps re-signing timestamp and snapshot, and devices keep verifying", async () => {
    const add = await gw.adminFetch("/admin/targets", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ targets: { "amd64-linux-1": entry(1) } }) });
    expect(add.status).toBe(200);
    await rename(join(keysDir(), "targets.json"), join(offline, "targets.json")); // targets signed offline from now on
    expect((await readdir(keysDir())).filter((f) => !f.startsWith(".")).sort()).toEqual(["snapshot.json", "timestamp.json"]); // as ls shows it
    await gw.stop();
    // Lifetimes shortened so that the run covers several of each (timestamp: 1 day -> 4 s, snapshot: 7 days -> 8 s).
    gw = await startGateway({ dataDir: gw.dataDir, args: ["--tuf-expiry", "timestamp=4s", "--tuf-expiry", "snapshot=8s"] });

    const got = await verify(device);
    expect(Object.keys(got.targets)).toEqual(["amd64-linux-1"]);
    const root = await deviceRoot(device);
    expect([root.version, root.roles.root!.threshold, root.roles.root!.keyIDs.length]).toEqual([2, 2, 3]);
    const fresh = await register(); // new devices get the 2-of-3 root at registration
    expect((await deviceRoot(fresh)).version).toBe(2);
    expect(Object.keys((await verify(fresh)).targets)).toEqual(["amd64-linux-1"]);

    const versionOf = async (file: string) => (JSON.parse(await (await gw.adminFetch(`/repo/${file}`)).text()) as { signed: { version: number } }).signed.version;
    const [ts0, sn0] = [await versionOf("timestamp.json"), await versionOf("snapshot.json")];
    const started = Date.now();
    let checks = 0;
    while (Date.now() - started < 14_000) {
      expect(Object.keys((await verify(device)).targets)).toEqual(["amd64-linux-1"]); // fails once a timestamp expires
      checks++;
      await Bun.sleep(1000);
    }
    expect(checks).toBeGreaterThanOrEqual(10);
    expect((await versionOf("timestamp.json")) - ts0).toBeGreaterThanOrEqual(3);
    expect((await versionOf("snapshot.json")) - sn0).toBeGreaterThanOrEqual(1);
    expect((await readdir(keysDir())).filter((f) => !f.startsWith(".")).sort()).toEqual(["snapshot.json", "timestamp.json"]); // as ls shows it

    // Adding a target needs the offline targets key: refused, saying which key.
    const refused = await gw.adminFetch("/admin/targets", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ targets: { "amd64-linux-2": entry(2) } }) });
    expect(refused.status).toBe(409);
    // Named by the folder and the key id: key file names do not matter (docs/keys.md), so "targets.json is absent" misled.
    const { error } = (await refused.json()) as { error: string };
    expect(error).toStartWith(`Cannot sign TUF targets metadata with ${keysDir()}: the targets key root.json trusts (`);
    expect(error).toMatch(/\([0-9a-f]{64}\) is in none of its files \(offline\?\)$/);
    expect(await Bun.file(gw.logFile).text()).not.toMatch(/cannot refresh TUF metadata/);
  });
});
