/**
 * A new user drives fioup by hand and gets the order wrong: `start` on a fetched update,
 * `update N` while another update is pending, `cancel` with nothing to cancel, `cancel`
 * while `fioup fetch` or the daemon is still fetching, Ctrl-C in the middle, `lock` taken twice. Each
 * refusal must say what to do next, and none may lose the update or the lock's reason.
 * The device talks to a real gateway through a fault proxy, whose stall keeps an update
 * busy mid-fetch for as long as the test needs.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Database } from "bun:sqlite";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { waitFor } from "../harness/tmp.ts";
import {
  Device, ROOT, collectCli, httpGet, httpdCompose, httpdImage, pushImageDetailed, randomBytes, startProxiedDevice, type ProxiedDevice,
} from "./_setup.ts";

const APP = `order${process.pid}`;
const REPO = `order/web${process.pid}`;
let t: ProxiedDevice;

beforeAll(async () => {
  // A stalled download is given up after a minute, not the default 15 s: the stall below outlasts the test's steps.
  t = await startProxiedDevice({ app: APP, repo: REPO, body: "order v1", config: "[fioup]\ndownload_stall_seconds = 60\n" });
}, 180_000);

afterAll(() => t?.stop());

/** Whether the device's latest update has done `step` (its row in update_steps). */
function stepDone(step: string): boolean {
  const path = join(t.device.sotaDir, "fioup.db");
  if (!existsSync(path)) return false;
  const db = new Database(path, { readonly: true });
  try {
    return !!db.query("SELECT 1 FROM update_steps WHERE step = ? AND update_id = (SELECT id FROM updates ORDER BY id DESC LIMIT 1)").get(step);
  } catch {
    return false;
  } finally {
    db.close();
  }
}

/**
 * Publishes `version` with an 8 MiB layer and runs `fioup <command>` until it sits mid-fetch
 * (the connection carrying the layer stops forwarding after 1 MiB); then `fioup cancel` must be
 * refused (13) naming that command and saying how to stop it (`stop`).
 */
async function stalledMidFetch(version: number, command: "fetch" | "daemon", stop: string) {
  const body = `order v${version}`;
  const { ref } = await pushImageDetailed(t.upstream, REPO, `v${version}`, { ...httpdImage(body), layers: [{ "/big.bin": randomBytes(8 << 20) }] });
  await t.pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(ref, t.port) });
  await t.pub.publish(version);
  t.proxy.inject({ kind: "stall", afterBytes: 1 << 20, stallMs: 60_000 });
  const applied = t.proxy.applied.length;
  const proc = t.device.spawn([command]);
  const running = collectCli(proc, `fioup ${command}`);
  await waitFor({
    service: `fioup ${command}`,
    what: "a stalled fetch",
    ready: () => t.proxy.applied.length > applied && t.device.updateState()?.state === "fetching",
    alive: () => proc.exitCode === null,
    timeoutMs: 60_000,
  });
  const busy = await t.device.fioup("cancel");
  expect(busy.code).toBe(13);
  expect(busy.json.code).toBe("LockedError");
  expect(busy.stderr).toContain(`Cannot cancel: \`fioup ${command}\` (process ${proc.pid}) holds the update lock`);
  expect(busy.stderr).toContain("Wait for it to finish (`fioup status` shows how far it is)");
  expect(busy.stderr).toContain(stop);
  return { proc, running };
}

describe("fioup steps in the wrong order", () => {
  test("each refusal names the command that comes next, and the fetched update stays", async () => {
    const none = await t.device.fioup("cancel");
    expect(none.code).toBe(24);
    expect(none.stderr).toContain("Cannot cancel: no update in progress (nothing to cancel)");
    expect(none.stderr).not.toContain("fioup fetch");

    expect((await t.device.fioup("fetch")).json.state).toBe("fetched");
    const start = await t.device.fioup("start");
    expect(start.code).toBe(10);
    expect(start.stderr).toContain("Cannot start: the update is fetched; run 'fioup install' next");

    const other = await t.device.fioup("update", "7");
    expect(other.code).toBe(10);
    expect(other.stderr).toContain("Cannot start an update to version 7: an update to amd64-linux-1 (version 1) is fetched");
    expect(other.stderr).toContain("'fioup cancel' to drop it");

    expect((await t.device.fioup("status")).json.pending.state).toBe("fetched");
    // Between the steps, check and status say which one is next.
    const check = await collectCli(t.device.spawn(["check"]), "fioup check");
    expect(check.stdout).toContain("Update in progress: amd64-linux-1 (version 1), fetched; next: 'fioup install'");
    const status = await collectCli(t.device.spawn(["status", "--no-apps"]), "fioup status");
    expect(status.stdout).toContain("  state: fetched\n  fetched: ");
    expect(status.stdout).toContain("  next: 'fioup install' (or 'fioup update' for every remaining step)");
    expect((await t.device.fioup("install")).json.state).toBe("installed");
    const done = await t.device.fioup("start");
    expect(done.json.state, done.stderr).toBe("completed");
    // The wait for the app is announced before it begins, not silent on a terminal.
    expect(done.stderr).toContain(`Starting ${APP}: waiting until it runs (healthy, where there is a healthcheck; at most 120 s)`);
    expect(await httpGet(t.port)).toBe("order v1");
  }, 120_000);

  test("cancel while `fioup fetch` runs names it; Ctrl-C says the update is saved and which command resumes it; cancel then drops it", async () => {
    const fetch = await stalledMidFetch(2, "fetch", "or stop it (Ctrl-C where it runs, or kill");
    // A daemon started meanwhile names the busy fioup too, not only its PID.
    const daemon = await collectCli(t.device.spawn(["daemon", "--cycles", "1"]), "fioup daemon");
    // It says it tries again by itself, not what the person at a prompt is told ("run this again").
    expect(daemon.stderr).toContain(`skipped: \`fioup fetch\` (process ${fetch.proc.pid}) holds the update lock; the next cycle checks again`);
    expect(daemon.stderr).not.toContain("run this again");

    fetch.proc.kill("SIGINT");
    const r = await fetch.running;
    expect(r.code).toBe(130);
    expect(r.stderr).toContain("Interrupted: the update to amd64-linux-2 (version 2) is saved (fetching); 'fioup fetch' resumes it, 'fioup cancel' drops it");

    expect((await t.device.fioup("status")).json.pending.state).toBe("fetching");
    const c = await t.device.fioup("cancel");
    expect(c.json.state, c.stderr).toBe("canceled");
    expect(await httpGet(t.port)).toBe("order v1");
  }, 120_000);

  test("the daemon stopped mid-fetch by SIGTERM logs where the update was saved and exits 0; cancel meanwhile names the daemon", async () => {
    const daemon = await stalledMidFetch(3, "daemon", "or stop the daemon (systemctl stop fioup, or SIGTERM) and run this again");
    const pid = daemon.proc.pid;
    try {
      // Status and check say the daemon carries the update on, not a command that would be refused (13).
      const status = await collectCli(t.device.spawn(["status", "--no-apps"]), "fioup status");
      expect(status.stdout).toContain(`  state: fetching\n  fetched: `);
      expect(status.stdout).toContain(`  in progress in \`fioup daemon\` (process ${pid})`);
      expect(status.stdout).not.toContain("next:");
      expect((await t.device.fioup("status", "--no-apps")).json.inProgressIn).toEqual({ pid, command: "daemon" });
      const check = await collectCli(t.device.spawn(["check"]), "fioup check");
      expect(check.stdout).toContain(`Update in progress: amd64-linux-3 (version 3), fetching, in \`fioup daemon\` (process ${pid}) now`);
      // A second daemon is refused at once, naming the first and how to stop it.
      const second = await collectCli(t.device.spawn(["daemon", "--cycles", "1"]), "fioup daemon");
      expect(second.code, second.stderr).toBe(13);
      expect(second.stderr).toContain(`Cannot start the daemon: another \`fioup daemon\` (process ${pid}) runs on this device`);
      expect(second.stderr).toContain(`stop that one first (systemctl stop fioup, or kill ${pid})`);
    } catch (e) {
      daemon.proc.kill("SIGKILL");
      throw e;
    }

    daemon.proc.kill("SIGTERM");
    const r = await daemon.running;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("interrupted: the update to amd64-linux-3 (version 3) is saved (fetching); the next start resumes it");
    expect(r.stderr).toMatch(/fioup daemon stopped\n$/);
    expect((await t.device.fioup("status")).json.pending.state).toBe("fetching");
    expect((await t.device.fioup("cancel")).json.state).toBe("canceled");
  }, 120_000);

  test("Ctrl-C or systemctl stop once the new apps are staged, before the old ones stop: the old apps run on, the update stays saved at installing", async () => {
    expect(await httpGet(t.port)).toBe("order v1"); // installed by the first test
    let version = 3;
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      version++;
      const { ref } = await pushImageDetailed(t.upstream, REPO, `v${version}`, { ...httpdImage(`order v${version}`), layers: [{ "/www/index.html": `order v${version}` }] });
      await t.pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(ref, t.port) });
      await t.pub.publish(version);
      // The signal comes at the fault point "staged" (every changed app staged, nothing stopped).
      const fioup = process.env.FIOUP_BIN ? [process.env.FIOUP_BIN] : [process.execPath, "fioup/main.ts"];
      const env = { ...process.env, ...t.device.env(), FIOUP_FAULT: "staged", FIOUP_FAULT_SIGNAL: signal };
      const r = await collectCli(Bun.spawn([...fioup, "update"], { env, stdout: "pipe", stderr: "pipe", cwd: ROOT }), "fioup update");
      expect(r.code, r.stderr).toBe(130); // fioup's "interrupted", whichever signal
      expect(r.stderr).not.toContain("Stopping");
      expect(r.stderr).toContain(`Interrupted: the update to amd64-linux-${version} (version ${version}) is saved (installing)`);
      expect(await httpGet(t.port)).toBe("order v1");
      expect(t.device.updateState()?.state).toBe("installing");
      const cancel = await t.device.fioup("cancel");
      expect(cancel.json.state, cancel.stderr).toBe("canceled");
      expect(await httpGet(t.port)).toBe("order v1");
    }
  }, 180_000);

  test("Ctrl-C after the install stopped the app says it stays stopped until the update is resumed or canceled", async () => {
    const { ref } = await pushImageDetailed(t.upstream, REPO, "v6", httpdImage("order v6")); // 4 and 5: the test before
    await t.pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(ref, t.port) });
    await t.pub.publish(6);
    const proc = t.device.spawn(["update"]);
    const running = collectCli(proc, "fioup update");
    await waitFor({ service: "fioup update", what: "the install's stop", ready: () => stepDone("stop"), alive: () => proc.exitCode === null, timeoutMs: 60_000 });
    proc.kill("SIGINT");
    const r = await running;
    expect(r.code, r.stderr).toBe(130);
    expect(r.stderr).toMatch(
      new RegExp(`Interrupted: the update to amd64-linux-6 \\(version 6\\) is saved \\(install(ing|ed)\\); 'fioup update' resumes it, 'fioup cancel' drops it; ${APP} is stopped until one of them runs`),
    );
    expect(await httpGet(t.port)).toBeUndefined();
    const u = await t.device.fioup("update");
    expect(u.json.state, u.stderr).toBe("completed");
    expect(await httpGet(t.port)).toBe("order v6");
  }, 120_000);

  test("a daemon killed (a crash, SIGKILL) does not keep the next one from starting", async () => {
    const first = t.device.spawn(["daemon"]);
    const lock = join(t.device.sotaDir, "daemon.lock");
    try {
      await waitFor({ service: "fioup daemon", what: "its lock", ready: () => existsSync(lock) && readFileSync(lock, "utf8").startsWith(`${first.pid} `), alive: () => first.exitCode === null, timeoutMs: 30_000 });
    } finally {
      first.kill("SIGKILL");
      await first.exited;
    }
    expect(existsSync(lock)).toBe(true); // left behind, as by a crash
    const next = await collectCli(t.device.spawn(["daemon", "--cycles", "1"]), "fioup daemon");
    expect(next.code, next.stderr).toBe(0);
    expect(next.stderr).toContain("fioup daemon started");
  }, 60_000);

  test("register says what to run next", async () => {
    const other = await Device.create(t.dockerd);
    const r = await collectCli(other.spawn(["register", "--server", t.gw.url, "--token", t.gw.adminToken, "--hwid", "amd64-linux"]), "fioup register");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("Next: 'fioup check' lists the targets for this device, 'fioup update' installs the newest, 'fioup daemon' keeps it up to date");
  }, 60_000);

  test("`fioup lock` again without --reason keeps the reason it was taken with", async () => {
    expect((await t.device.fioup("lock", "--reason", "backup running")).code).toBe(0);
    const again = await t.device.fioup("lock");
    expect(again.json).toMatchObject({ name: "fioup", reason: "backup running", alreadyHeld: true });
    expect((await t.device.fioup("status", "--no-apps")).json.updateLocks).toMatchObject([{ name: "fioup", reason: "backup running" }]);
    const text = await collectCli(t.device.spawn(["lock"]), "fioup lock");
    expect(text.stdout).toContain(`Update lock "fioup" was already held (backup running)`);

    const bad = await t.device.fioup("unlock", "--name", "bad/name");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`invalid lock name "bad/name": use 1-64 of A-Z a-z 0-9 . _ - not starting with "."`);
    // A mistyped name while the real lock holds: not a success, and the message names what holds.
    const typo = await t.device.fioup("unlock", "--name", "fiuop");
    expect(typo.code).toBe(1);
    expect(typo.stderr).toContain(`No update lock "fiuop"; installs are still held by "fioup" (give --name with one of these, or --all)`);
    // A script reading --format json tells this refusal from any other failure.
    expect(typo.json).toMatchObject({ code: "UpdateLockNotHeldError", exitCode: 1 });
    expect((await t.device.fioup("status", "--no-apps")).json.updateLocks).toMatchObject([{ name: "fioup" }]);
    expect((await t.device.fioup("unlock")).json.released).toEqual(["fioup"]);
    // Nothing held any more: unlocking again is what was asked for, not an error.
    const again2 = await t.device.fioup("unlock");
    expect(again2.code).toBe(0);
    expect(again2.json).toEqual({ released: [], held: [] });
  }, 60_000);
});
