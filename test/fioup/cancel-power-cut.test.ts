/**
 * A power cut during `fioup cancel`: the update was installed (the old app stopped, the new
 * app's dir swapped in, not started) and the cancel is killed right after it saved
 * `cancelling` (FIOUP_FAULT=state:cancelling), before it restored anything. The device must
 * not stay there with its app down: `check` and `status` name `fioup cancel` as what comes
 * next, `install` refuses saying so, and the next `fioup cancel`, `fioup update` or daemon
 * cycle finishes the cancel and brings the previous app back, running. A later update to the
 * same target then really runs it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../harness/tmp.ts";
import { ROOT, collectCli, Device, httpGet, httpdCompose, httpdImage, pushImage, type DockerRegistryHandle, type Publisher, deviceRig, type DeviceRig } from "./_setup.ts";

const APP = `cancelcut${process.pid}`;
const REPO = `cancelcut/web${process.pid}`;
let rig: DeviceRig;
let upstream: DockerRegistryHandle;
let device: Device;
let pub: Publisher;
let port: number;
let reportDir: string;
let version = 1;

beforeAll(async () => {
  rig = await deviceRig({ app: APP, repo: REPO, body: "cut v1" });
  ({ upstream, device, pub, port } = rig);
  reportDir = await tempDir("cancel-cut-report-");
}, 180_000);

afterAll(async () => {
  await rig?.stop();
});

/** Publishes the next version, fetches and installs it (the v1 app stops), then kills `fioup cancel` once it saved `cancelling`. */
async function installThenCutCancel(): Promise<void> {
  version++;
  const ref = await pushImage(upstream, REPO, `v${version}`, httpdImage(`cut v${version}`));
  await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(ref, port) });
  await pub.publish(version);
  const f = await device.fioup("fetch");
  expect(f.json?.state, f.stderr).toBe("fetched");
  const i = await device.fioup("install");
  expect(i.json?.state, i.stderr).toBe("installed");
  expect(await httpGet(port)).toBeUndefined(); // the old app is stopped, the new one not started
  // Steps already done run again as no-ops (docs/updates.md, "Step by step"): exit 0, the update as it stands.
  for (const again of ["install", "fetch"]) {
    const r = await device.fioup(again);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.state).toBe("installed");
  }

  const report = join(reportDir, `cut-${version}.jsonl`);
  const fioup = process.env.FIOUP_BIN ? [process.env.FIOUP_BIN] : [process.execPath, join(ROOT, "fioup/main.ts")];
  const cut = Bun.spawn([...fioup, "cancel"], {
    env: { ...process.env, ...device.env(), FIOUP_FAULT: "state:cancelling", FIOUP_FAULT_REPORT: report },
    stdout: "pipe",
    stderr: "pipe",
    cwd: ROOT,
  });
  const r = await collectCli(cut, "fioup cancel (cut)");
  expect(cut.signalCode, r.stderr).toBe("SIGKILL");
  expect(existsSync(report) && JSON.parse(readFileSync(report, "utf8").split("\n")[0]!).point).toBe("state:cancelling");
  expect(device.updateState()?.state).toBe("cancelling");
  expect(await httpGet(port)).toBeUndefined(); // still down: nothing was restored
}

/** The v1 app runs again and no update is pending. */
async function backOnV1(): Promise<void> {
  expect(await httpGet(port)).toBe("cut v1");
  const st = await device.fioup("status", "--no-apps");
  expect(st.json.pending).toBeNull();
  expect(st.json.last.state).toBe("canceled");
  expect(st.json.current.name).toBe("amd64-linux-1");
}

describe("a power cut during fioup cancel", () => {
  test("check and status name 'fioup cancel' next, install refuses saying so, and the next cancel restores the old app", async () => {
    await installThenCutCancel();
    const check = await collectCli(device.spawn(["check"]), "fioup check");
    expect(check.stdout).toContain(`Update in progress: amd64-linux-${version} (version ${version}), cancelling; next: 'fioup cancel'`);
    const status = await collectCli(device.spawn(["status", "--no-apps"]), "fioup status");
    expect(status.stdout).toContain("  state: cancelling\n");
    expect(status.stdout).toContain("  next: 'fioup cancel'");
    const install = await device.fioup("install");
    expect(install.code).toBe(10);
    expect(install.stderr).toContain("Cannot install: the update is cancelling; run 'fioup cancel' next to finish canceling it ('fioup update' finishes it too)");

    const c = await device.fioup("cancel");
    expect(c.code, c.stderr).toBe(0);
    expect(c.json.state).toBe("canceled");
    await backOnV1();

    // The same target again: installed and running for real, not taken as installed already.
    const u = await device.fioup("update");
    expect(u.code, u.stderr).toBe(0);
    expect(u.json.state).toBe("completed");
    expect(await httpGet(port)).toBe(`cut v${version}`);
    // Back to v1 for the next case.
    const down = await device.fioup("update", "1");
    expect(down.json?.state, down.stderr).toBe("completed");
    expect(await httpGet(port)).toBe("cut v1");
  }, 240_000);

  test("fioup update finishes the cancel first, and stops there; the next one updates", async () => {
    await installThenCutCancel();
    const u = await device.fioup("update");
    expect(u.code, u.stderr).toBe(0);
    expect(u.stderr).toContain(`Finishing the interrupted cancel of the update to amd64-linux-${version} (version ${version}): restoring ${APP}`);
    expect(u.json.state).toBe("canceled");
    await backOnV1();
    const again = await device.fioup("update");
    expect(again.json?.state, again.stderr).toBe("completed");
    expect(await httpGet(port)).toBe(`cut v${version}`);
    const down = await device.fioup("update", "1");
    expect(down.json?.state, down.stderr).toBe("completed");
  }, 240_000);

  test("a daemon cycle finishes the cancel", async () => {
    await installThenCutCancel();
    const d = await collectCli(device.spawn(["daemon", "--cycles", "1"]), "fioup daemon");
    expect(d.code, d.stderr).toBe(0);
    expect(d.stderr).toContain(`Finishing the interrupted cancel of the update to amd64-linux-${version}`);
    expect(d.stderr).not.toContain("update failed");
    await backOnV1();
  }, 240_000);
});
