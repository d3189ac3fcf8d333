/**
 * `fioup cancel` of an update stopped (Ctrl-C, a power cut) while install staged the new app,
 * before its stop step: the old app never stopped, so the cancel leaves it alone. It was
 * restarted before (stopped and started again, as for an update that had swapped it), a needless
 * outage that could even report a failed restore for an app that was fine.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ROOT, collectCli, httpGet, httpdCompose, httpdImage, pushImage, deviceRig, type DeviceRig } from "./_setup.ts";

const APP = `cancelstaged${process.pid}`;
const REPO = `cancelstaged/web${process.pid}`;
let rig: DeviceRig;

beforeAll(async () => {
  rig = await deviceRig({ app: APP, repo: REPO, body: "staged v1" });
}, 180_000);

afterAll(async () => {
  await rig?.stop();
});

/** Each container of the app: its id and when it last started. */
async function containers(): Promise<string[]> {
  const ids = (await rig.dockerd.docker("ps", "-aq", "--filter", `label=com.docker.compose.project=${APP}`)).trim().split("\n").filter(Boolean).sort();
  return await Promise.all(ids.map(async (id) => `${id} ${(await rig.dockerd.docker("inspect", "-f", "{{.State.StartedAt}}", id)).trim()}`));
}

describe("cancel of an update stopped before its stop step", () => {
  test("the running app is not restarted, and the staged app is discarded", async () => {
    const { device, upstream, pub, port } = rig;
    const ref = await pushImage(upstream, REPO, "v2", httpdImage("staged v2"));
    await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(ref, port) });
    await pub.publish(2);
    const before = await containers();
    expect(before.length).toBe(1);

    // Killed at the fault point "staged": every changed app staged, nothing stopped.
    const fioup = process.env.FIOUP_BIN ? [process.env.FIOUP_BIN] : [process.execPath, join(ROOT, "fioup/main.ts")];
    const cut = Bun.spawn([...fioup, "update"], { env: { ...process.env, ...device.env(), FIOUP_FAULT: "staged" }, stdout: "pipe", stderr: "pipe", cwd: ROOT });
    const r = await collectCli(cut, "fioup update (cut at staged)");
    expect(cut.signalCode, r.stderr).toBe("SIGKILL");
    expect(device.updateState()?.state).toBe("installing");
    const staged = join(device.root, "var/sota/compose-apps", `.${APP}.staged`);
    expect(existsSync(staged)).toBe(true);
    expect(await httpGet(port)).toBe("staged v1");

    const c = await device.fioup("cancel");
    expect(c.code, c.stderr).toBe(0);
    expect(c.json.state).toBe("canceled");
    expect(await containers()).toEqual(before); // the same container, never stopped nor started again
    expect(await httpGet(port)).toBe("staged v1");
    expect(existsSync(staged)).toBe(false);
  }, 180_000);
});
