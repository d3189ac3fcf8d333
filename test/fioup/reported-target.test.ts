/**
 * The target a device reports is the one it runs now, also from a process that lives on while
 * another one updates the device: the daemon keeps its session for weeks, and a manual `fioup
 * update` (or an offline update from a USB stick) may move the device meanwhile. The gateway
 * records the device's target from the x-ats-target header of every check-in, so a session that
 * read it once would put the old version back on the dashboard, in `gateway devices list` and in
 * rollouts' counts at its next request. Real fioup, a real gateway on loopback and the private
 * dockerd (an update's last step prunes images); targets without apps.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { EMPTY_SHA256 } from "../../lib/api/target.ts";
import { openSession } from "../../fioup/session.ts";
import { startDockerd, type DockerdHandle } from "../harness/dockerd.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { tempDir, until } from "../harness/tmp.ts";

const MAIN = join(import.meta.dir, "../../fioup/main.ts");
const HWID = "amd64-reported";

let gw: GatewayHandle;
let dockerd: DockerdHandle;

async function fioup(root: string, args: string[]) {
  const p = Bun.spawn([process.execPath, MAIN, ...args], {
    env: { ...process.env, FIOUP_ROOT: root, ...dockerd.env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code, out, err };
}

const admin = (path: string, method = "GET", body?: unknown) =>
  gw.adminFetch(path, { method, ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }) });

async function publish(version: string): Promise<void> {
  const entry = { length: 0, hashes: { sha256: EMPTY_SHA256 }, custom: { version, hardwareIds: [HWID], tags: ["main"], docker_compose_apps: {} } };
  const res = await admin("/admin/targets", "POST", { targets: { [`${HWID}-${version}`]: entry } });
  expect(res.status).toBeLessThan(300);
}

beforeAll(async () => {
  [gw, dockerd] = await Promise.all([startGateway(), startDockerd()]);
  await publish("1");
}, 120_000);
afterAll(async () => {
  await gw?.stop();
  await dockerd?.stop();
}, 60_000);

test("a long-lived session reports the target another fioup run moved the device to", async () => {
  const root = await tempDir("reported-target-");
  const token = ((await (await admin("/admin/tokens", "POST", { maxUses: 1, tags: ["main"] })).json()) as { token: string }).token;
  const reg = await fioup(root, ["register", "--server", gw.url, "--token", token, "--hwid", HWID]);
  expect(reg.code, reg.err).toBe(0);
  const uuid = /Registered device (\S+)/.exec(reg.out)![1]!;
  const first = await fioup(root, ["update"]);
  expect(first.code, first.err + first.out).toBe(0);

  // The daemon's session, opened while the device runs version 1 (FIOUP_ROOT only while it opens:
  // the config resolves every path then).
  const before = process.env.FIOUP_ROOT;
  process.env.FIOUP_ROOT = root;
  let s: ReturnType<typeof openSession>;
  try {
    s = openSession({ requireRegistration: true });
  } finally {
    if (before === undefined) delete process.env.FIOUP_ROOT;
    else process.env.FIOUP_ROOT = before;
  }
  try {
    const seen = async () => ((await (await admin(`/admin/devices/${uuid}`)).json()) as { currentTarget: string | null }).currentTarget;
    const checkIn = async () => expect((await s.client!.fetch("/repo/timestamp.json")).status).toBe(200);
    await checkIn();
    await until("the gateway to record version 1", seen, (t) => t === `${HWID}-1`, 10_000, 200);

    // A manual update, in another process, while the session lives on.
    await publish("2");
    const manual = await fioup(root, ["update"]);
    expect(manual.code, manual.err + manual.out).toBe(0);
    await until("the gateway to record version 2", seen, (t) => t === `${HWID}-2`, 10_000, 200);

    // The session's next check-in says version 2 too; the gateway keeps it.
    await checkIn();
    await Bun.sleep(1500); // sightings reach the database in batches: past one
    await checkIn();
    await Bun.sleep(1500);
    expect(await seen()).toBe(`${HWID}-2`);
    expect(s.client!.headers().get("x-ats-target")).toBe(`${HWID}-2`);
  } finally {
    s.close();
  }
}, 120_000);
