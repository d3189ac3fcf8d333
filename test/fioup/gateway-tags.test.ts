/**
 * A device follows the tags the gateway decided for it, with the real fioup against a real
 * gateway on loopback: registered with `--tag beta` through a token that gives `main`, it follows
 * `main` (and says so); retagged by the admin (`PUT /admin/devices/:uuid/tags`, as `gateway
 * devices tag` does), its next check selects by the new tags and writes them into sota.toml. An
 * owner's `pacman.tags` in /etc/sota/conf.d still wins on the device, with a warning; a device
 * whose token lets it choose keeps its own. Targets without apps: no container engine needed.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EMPTY_SHA256 } from "../../lib/api/target.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { tempDir } from "../harness/tmp.ts";

const MAIN = join(import.meta.dir, "../../fioup/main.ts");
const HWID = "amd64-tags";

let gw: GatewayHandle;

async function fioup(root: string, args: string[]) {
  const p = Bun.spawn([process.execPath, MAIN, ...args], {
    env: { ...process.env, FIOUP_ROOT: root, DOCKER_HOST: "unix:///nonexistent.sock" },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code, out, err };
}

const admin = (path: string, method: string, body: unknown) =>
  gw.adminFetch(path, { method, headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

async function token(body: { tags?: string[]; allowDeviceTags?: boolean }): Promise<string> {
  return ((await (await admin("/admin/tokens", "POST", { maxUses: 5, ...body })).json()) as { token: string }).token;
}

/** The check's targets, by name (its JSON output). */
async function check(root: string) {
  const r = await fioup(root, ["check", "--format", "json"]);
  expect([0, 2, 3, 4, 5]).toContain(r.code); // an update or none: both answers
  const o = JSON.parse(r.out) as { available: { name: string }[]; update: { name: string } | null };
  return { names: o.available.map((t) => t.name), update: o.update?.name ?? null, err: r.err };
}

const sotaTags = (root: string) => /^tags = "(.*)"$/m.exec(readFileSync(join(root, "var/sota/sota.toml"), "utf8"))?.[1];

beforeAll(async () => {
  gw = await startGateway();
  const entry = (version: string, tags: string[]) => ({ length: 0, hashes: { sha256: EMPTY_SHA256 }, custom: { version, hardwareIds: [HWID], tags, docker_compose_apps: {} } });
  const res = await admin("/admin/targets", "POST", { targets: { [`${HWID}-1`]: entry("1", ["main"]), [`${HWID}-2`]: entry("2", ["beta"]) } });
  expect(res.status).toBeLessThan(300);
}, 120_000);
afterAll(() => gw?.stop(), 60_000);

test("the device follows the gateway's tags: at registration, after the admin retags it, not over an owner's override", async () => {
  const root = await tempDir("tags-device-");
  const reg = await fioup(root, ["register", "--server", gw.url, "--token", await token({ tags: ["main"] }), "--hwid", HWID, "--tag", "beta"]);
  expect(reg.code, reg.err).toBe(0);
  expect(reg.err).toContain("warning: the gateway registered this device with the tags main (its registration token decides them), not --tag beta: following the gateway's");
  expect(sotaTags(root)).toBe("main");
  const uuid = /Registered device (\S+)/.exec(reg.out)![1]!;
  expect(await check(root)).toMatchObject({ names: [`${HWID}-1`], update: `${HWID}-1` });

  // The admin moves it to beta: its next check selects beta's target, and sota.toml says beta.
  expect((await admin(`/admin/devices/${uuid}/tags`, "PUT", { tags: ["beta"] })).status).toBe(200);
  const moved = await check(root);
  expect(moved).toMatchObject({ names: [`${HWID}-2`], update: `${HWID}-2` });
  expect(moved.err).toContain(`the gateway set this device's tags to beta (were main); written to ${join(root, "var/sota/sota.toml")}`);
  expect(sotaTags(root)).toBe("beta");
  const status = await fioup(root, ["status", "--no-apps"]);
  expect(status.out).toContain("tags: beta");
  // Said once: the next check has nothing to change.
  expect((await check(root)).err).not.toContain("the gateway set");

  // The device's owner pins main in /etc/sota/conf.d: the device keeps it, says the gateway differs, and writes nothing.
  mkdirSync(join(root, "etc/sota/conf.d"), { recursive: true });
  const pin = join(root, "etc/sota/conf.d/70-tags.toml");
  writeFileSync(pin, '[pacman]\ntags = "main"\n');
  expect((await admin(`/admin/devices/${uuid}/tags`, "PUT", { tags: ["qa"] })).status).toBe(200);
  const pinned = await check(root);
  expect(pinned).toMatchObject({ names: [`${HWID}-1`] });
  expect(pinned.err).toContain(`warning: the gateway's tags for this device are qa, but ${pin} sets pacman.tags main, which this device keeps`);
  expect(sotaTags(root)).toBe("beta");
}, 120_000);

test("a token that gives no tags: --tag is kept on the device, with a warning that the gateway records none, until the admin tags it", async () => {
  const root = await tempDir("tags-untagged-");
  const reg = await fioup(root, ["register", "--server", gw.url, "--token", await token({}), "--hwid", HWID, "--tag", "beta"]);
  expect(reg.code, reg.err).toBe(0);
  expect(reg.err).toContain(
    "warning: the registration token gives no tags and does not let devices choose theirs, so the gateway records none for this device: it follows --tag beta here, but rollouts by tag do not count it until 'gateway devices tag' sets its tags",
  );
  expect(sotaTags(root)).toBe("beta");
  const uuid = /Registered device (\S+)/.exec(reg.out)![1]!;
  expect(((await (await gw.adminFetch(`/admin/devices/${uuid}`)).json()) as { tags: string[] }).tags).toEqual([]);
  // No tags on the gateway: nothing to follow, the device keeps beta (not every target of its hardware id).
  expect(await check(root)).toMatchObject({ names: [`${HWID}-2`] });
  expect((await admin(`/admin/devices/${uuid}/tags`, "PUT", { tags: ["main"] })).status).toBe(200);
  expect(await check(root)).toMatchObject({ names: [`${HWID}-1`] });
  expect(sotaTags(root)).toBe("main");
}, 120_000);

test("a device whose token lets it choose keeps its own tags", async () => {
  const root = await tempDir("tags-chooser-");
  const reg = await fioup(root, ["register", "--server", gw.url, "--token", await token({ allowDeviceTags: true }), "--hwid", HWID, "--tag", "beta"]);
  expect(reg.code, reg.err).toBe(0);
  expect(reg.err).not.toContain("warning");
  const uuid = /Registered device (\S+)/.exec(reg.out)![1]!;
  expect(await check(root)).toMatchObject({ names: [`${HWID}-2`] });
  expect((await admin(`/admin/devices/${uuid}/tags`, "PUT", { tags: ["main"] })).status).toBe(200);
  const after = await check(root);
  expect(after).toMatchObject({ names: [`${HWID}-2`] });
  expect(after.err).not.toContain("the gateway set");
  expect(sotaTags(root)).toBe("beta");
}, 120_000);
