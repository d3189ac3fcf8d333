/**
 * Maintenance windows and update locks on a real device (private dockerd, real gateway):
 * - with the window closed the daemon fetches every byte of the new target (the gateway's own
 *   count of registry bytes served) but installs nothing, reports the deferral, and installs
 *   once the window opens (the device's clock is moved through FIOUP_TEST_NOW_FILE, the
 *   tests-only clock of fioup/update/hold.ts), without fetching anything more;
 * - `fioup lock` defers the daemon's install until `fioup unlock`, which wakes it at once;
 * - a lock file an app left behind defers `fioup update` (exit 14) only until the maximum hold
 *   time, then the update proceeds and says so; every deferral reaches the gateway as an event;
 * - `--force` installs through a hold; a window without a zone follows the device's `timezone`
 *   label; a target withdrawn while its install waited is canceled, not installed.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { servedBytes, startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { tempDir, until } from "../harness/tmp.ts";
import {
  asTestGateway, deviceOnV1, Device, freePort, httpGet, httpdCompose, httpdImage, pushImageDetailed, randomBytes, startDockerd, startDockerRegistry,
  type DockerdHandle, type DockerRegistryHandle, type Publisher, type TestGateway,
} from "./_setup.ts";

const APP = `hold${process.pid}`;
const REPO = `holds/app${process.pid}`;
const MiB = 1 << 20;
let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let handle: GatewayHandle;
let gw: TestGateway;
let device: Device;
let pub: Publisher;
let uuid: string;
let port: number;
let version = 1;
/** The device's clock for holds (FIOUP_TEST_NOW_FILE), when a test sets one. */
let clockFile: string | undefined;

beforeAll(async () => {
  [dockerd, upstream, handle] = await Promise.all([startDockerd(), startDockerRegistry(), startGateway({ args: ["--polling-seconds", "1"] })]);
  gw = asTestGateway(handle);
  port = await freePort();
  device = await Device.create(dockerd);
  const env = device.env.bind(device);
  device.env = () => ({ ...env(), ...(clockFile ? { FIOUP_TEST_NOW_FILE: clockFile } : {}) });
  ({ pub, uuid } = await deviceOnV1({ gw, upstream, device, app: APP, repo: REPO, port, body: "hold v1" }));
}, 180_000);

afterAll(async () => {
  await device?.cleanup([APP]).catch(() => {});
  await Promise.all([handle?.stop(), upstream?.stop()]);
  await dockerd?.stop();
});

/** The device owner's drop-in with the hold settings (replaces the previous one). */
function holdConfig(toml: string) {
  const dir = join(device.root, "etc/sota/conf.d");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "60-hold.toml"), `[fioup]\n${toml}\n`);
}

/** Publishes the next version: a new image with a `size`-byte random layer. Returns its body and new layer size. */
async function publishNext(size: number): Promise<{ body: string; name: string }> {
  version++;
  const body = `hold v${version}`;
  await pushImageDetailed(upstream, REPO, `v${version}`, { ...httpdImage(body), layers: [{ "/www/index.html": body }, { "/big.bin": randomBytes(size) }] });
  await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(`${upstream.host}/${REPO}:v${version}`, port) });
  await pub.publish(version);
  return { body, name: `amd64-linux-${version}` };
}

/** How long the waits below give the daemon, and how often they look (the device's database, the gateway's API). */
const WAIT_MS = 60_000;
const POLL_MS = 100;

/** The device's update state, once it is `state`. */
const stateReached = (what: string, state: string) => until(what, () => device.updateState(), (s) => s?.state === state, WAIT_MS, POLL_MS);
/** This device's hold events for `target` at the gateway, once there are any. */
const holdEventsSeen = (target: string) => until(`the deferral of ${target} at the gateway`, () => holdEvents(target), (es) => es.length > 0, WAIT_MS, POLL_MS);
/** The gateway's UpdateHoldReleased event for `target`. */
async function releaseSeen(target: string) {
  const released = (e: { type: string }) => e.type === "UpdateHoldReleased";
  const events = await until(`the release of ${target} at the gateway`, () => holdEvents(target), (es) => es.some(released), WAIT_MS, POLL_MS);
  return events.find(released)!;
}
/** The app's page serving `body`. */
const serving = (body: string) => until(`the app to serve "${body}"`, () => httpGet(port), (b) => b === body, WAIT_MS, POLL_MS);

/** The gateway's record of this device's hold events for `target`, in order. */
async function holdEvents(target: string): Promise<{ type: string; details: any }[]> {
  const r = await gw.admin<{ updates: { targetName?: string; events: any[] }[] }>(`/admin/devices/${uuid}/updates`);
  return r.updates
    .filter((u) => u.targetName === target)
    .flatMap((u) => u.events)
    .filter((e) => e.eventType.id === "UpdateDeferred" || e.eventType.id === "UpdateHoldReleased")
    .map((e) => ({ type: e.eventType.id, details: JSON.parse(e.event.details) }));
}

function startDaemon() {
  const p = device.spawn(["daemon"]);
  let log = "";
  const reading = (async () => {
    for await (const chunk of p.stderr) log += new TextDecoder().decode(chunk);
  })();
  return {
    log: () => log,
    async stop() {
      p.kill("SIGTERM");
      await Promise.race([p.exited, Bun.sleep(30_000)]);
      if (p.exitCode === null) p.kill("SIGKILL");
      await reading.catch(() => {});
    },
  };
}

describe("install holds", () => {
  test("a closed window: every byte is fetched, nothing installed; the install happens when the window opens", async () => {
    clockFile = join(await tempDir("fioup-clock-"), "now");
    writeFileSync(clockFile, "2026-12-05T10:00:00Z");
    holdConfig(`install_window = "daily 02:00-04:00 UTC"`);
    const before = await servedBytes(handle, `device:${uuid}`);
    const v = await publishNext(4 * MiB);
    const daemon = startDaemon();
    try {
      const fetched = (await stateReached("the update to be fetched", "fetched"))!;
      const afterFetch = await servedBytes(handle, `device:${uuid}`);
      // Every byte of the new target crossed the wire before the window: the gateway counted them.
      expect(afterFetch.blob - before.blob).toBeGreaterThanOrEqual(4 * MiB);
      expect(fetched.bytesFetched).toBeGreaterThanOrEqual(4 * MiB);
      // The gateway hears why, and until when.
      const [deferred] = await holdEventsSeen(v.name);
      expect(deferred!.type).toBe("UpdateDeferred");
      expect(deferred!.details).toMatchObject({ reason: "window", until: "2026-12-06T02:00:00Z", heldSince: "2026-12-05T10:00:00Z", window: "daily 02:00-04:00 UTC", timeZone: "UTC" });
      // Later polls: still waiting, the old version still serves, and the deferral was sent once.
      const deferrals = () => daemon.log().split("deferred: outside the maintenance window").length - 1;
      await until("two more cycles (3 window deferrals in the daemon's log)", deferrals, (n) => n >= 3, 30_000, POLL_MS);
      expect(device.updateState()?.state).toBe("fetched");
      expect(await httpGet(port)).toBe(`hold v${version - 1}`);
      const st = await device.fioup("status", "--no-apps");
      expect(st.json.hold).toMatchObject({ reason: "window", until: "2026-12-06T02:00:00Z", window: "daily 02:00-04:00 UTC" });
      expect((await holdEvents(v.name)).filter((e) => e.type === "UpdateDeferred")).toHaveLength(1);

      writeFileSync(clockFile, "2026-12-06T02:30:00Z"); // the window opens
      await serving(v.body);
      await stateReached("the update to complete", "completed");
      // Installing fetched nothing more.
      expect((await servedBytes(handle, `device:${uuid}`)).blob).toBe(afterFetch.blob);
      const released = await releaseSeen(v.name);
      expect(released.details).toEqual({ heldSince: "2026-12-05T10:00:00Z", releasedBy: "window" });
    } finally {
      await daemon.stop();
      clockFile = undefined;
    }
  }, 180_000);

  test("fioup lock defers the daemon's install until fioup unlock", async () => {
    // Polling every 2 minutes: only the watch on the lock directory can wake the daemon in time.
    holdConfig(`max_hold_seconds = 3600\n[uptane]\npolling_seconds = 120`);
    const lock = await device.fioup("lock", "--reason", "backup running");
    expect(lock.code).toBe(0);
    const v = await publishNext(64 * 1024);
    const daemon = startDaemon();
    try {
      await stateReached("the update to be fetched", "fetched");
      const [deferred] = await holdEventsSeen(v.name);
      expect(deferred!.details).toMatchObject({ reason: "lock", locks: [{ name: "fioup", reason: "backup running" }] });
      expect(Date.parse(deferred!.details.until) - Date.parse(deferred!.details.heldSince)).toBe(3600_000);
      await until("the daemon to log the hold", () => daemon.log().includes("held by update lock"), (logged) => logged, 30_000, POLL_MS);
      await Bun.sleep(1_000);
      expect(device.updateState()?.state).toBe("fetched");
      expect(await httpGet(port)).toBe(`hold v${version - 1}`);
      const st = await device.fioup("status", "--no-apps");
      expect(st.json.hold).toMatchObject({ reason: "lock", locks: ["fioup"] });
      expect(st.json.updateLocks).toMatchObject([{ name: "fioup", reason: "backup running" }]);

      const unlocked = Date.now();
      expect((await device.fioup("unlock")).json).toEqual({ released: ["fioup"], held: [] });
      await serving(v.body);
      // The daemon noticed the release at once, long before its next poll.
      expect(Date.now() - unlocked).toBeLessThan(20_000);
      expect(daemon.log()).toContain("the update locks changed: checking the hold now");
      const released = await releaseSeen(v.name);
      expect(released.details.releasedBy).toBe("lock");
    } finally {
      await daemon.stop();
    }
  }, 180_000);

  test("a lock file held past the maximum hold time is overridden, and the update says so", async () => {
    // The hold clock (FIOUP_TEST_NOW_FILE) moves past the maximum hold instead of the test waiting it out.
    clockFile = join(await tempDir("fioup-clock-"), "now");
    writeFileSync(clockFile, "2026-12-05T10:00:00Z");
    holdConfig(`max_hold_seconds = 4`);
    const locks = join(device.sotaDir, "update-locks");
    mkdirSync(locks, { recursive: true });
    writeFileSync(join(locks, "app-busy"), "transaction in flight\n"); // what an app writes through its bind mount
    try {
      const v = await publishNext(64 * 1024);
      const first = await device.fioup("update");
      expect(first.code, first.stderr).toBe(14);
      expect(first.stderr).toContain(`Install of ${v.name} deferred: held by update lock "app-busy" (transaction in flight)`);
      expect(device.updateState()?.state).toBe("fetched");
      const again = await device.fioup("install");
      expect(again.code, again.stderr).toBe(14);
      expect(await httpGet(port)).toBe(`hold v${version - 1}`);

      writeFileSync(clockFile, "2026-12-05T10:00:04.500Z");
      const last = await device.fioup("update");
      expect(last.code, last.stderr).toBe(0);
      expect(last.stderr).toContain(`Update lock "app-busy" held ${v.name} past the maximum hold time of 4 s: installing anyway`);
      expect(await httpGet(port)).toBe(v.body);
      const events = await holdEvents(v.name);
      expect(events.map((e) => e.type)).toEqual(["UpdateDeferred", "UpdateHoldReleased"]); // one deferral for two refusals
      expect(events[0]!.details).toMatchObject({ reason: "lock", locks: [{ name: "app-busy", reason: "transaction in flight" }] });
      expect(events[1]!.details).toMatchObject({ releasedBy: "max-hold", heldSince: "2026-12-05T10:00:00Z" });
    } finally {
      rmSync(join(locks, "app-busy"), { force: true }); // the app is done
      clockFile = undefined;
    }
  }, 180_000);

  test("a lock that deferred an install while the clock read 1970 (a boot before NTP) is not overridden the moment NTP sets the time", async () => {
    clockFile = join(await tempDir("fioup-clock-"), "now");
    writeFileSync(clockFile, "1970-01-01T00:00:10Z");
    holdConfig(`max_hold_seconds = 60`);
    const locks = join(device.sotaDir, "update-locks");
    mkdirSync(locks, { recursive: true });
    writeFileSync(join(locks, "app-busy"), "transaction in flight\n");
    try {
      const v = await publishNext(64 * 1024);
      const first = await device.fioup("update");
      expect(first.code, first.stderr).toBe(14);
      expect(first.stderr).toContain(`Install of ${v.name} deferred: held by update lock "app-busy"`);
      // NTP sets the time: the hold counts from when the update was made, not from 1970.
      writeFileSync(clockFile, new Date(Date.now() + 5_000).toISOString());
      const again = await device.fioup("update");
      expect(again.code, again.stderr).toBe(14);
      expect(again.stderr).not.toContain("past the maximum hold time");
      expect(await httpGet(port)).toBe(`hold v${version - 1}`);
      writeFileSync(clockFile, new Date(Date.now() + 120_000).toISOString()); // past the maximum hold, counted from then
      const last = await device.fioup("update");
      expect(last.code, last.stderr).toBe(0);
      expect(last.stderr).toContain(`Update lock "app-busy" held ${v.name} past the maximum hold time of 60 s: installing anyway`);
      expect(await httpGet(port)).toBe(v.body);
    } finally {
      rmSync(join(locks, "app-busy"), { force: true });
      clockFile = undefined;
    }
  }, 180_000);

  test("--force installs through a hold", async () => {
    clockFile = join(await tempDir("fioup-clock-"), "now");
    writeFileSync(clockFile, "2026-12-05T10:00:00Z");
    holdConfig(`install_window = "daily 02:00-04:00 UTC"\nmax_hold_seconds = 3600`);
    await device.fioup("lock", "--name", "busy");
    try {
      const v = await publishNext(64 * 1024);
      const r = await device.fioup("update", "--force");
      expect(r.code, r.stderr).toBe(0);
      expect(await httpGet(port)).toBe(v.body);
      expect((await holdEvents(v.name)).length).toBe(0); // never deferred
    } finally {
      clockFile = undefined;
      await device.fioup("unlock", "--name", "busy");
    }
  }, 180_000);

  test("a window without a zone is read in the zone of the device's timezone label", async () => {
    clockFile = join(await tempDir("fioup-clock-"), "now");
    writeFileSync(clockFile, "2026-12-05T16:30:00Z"); // 01:30 in Tokyo
    holdConfig(`install_window = "daily 02:00-04:00"`);
    await gw.admin(`/admin/devices/${uuid}/labels`, { method: "PUT", body: JSON.stringify({ set: { timezone: "Asia/Tokyo" } }) });
    try {
      const v = await publishNext(64 * 1024);
      const held = await device.fioup("update");
      expect(held.code, held.stderr).toBe(14);
      expect(held.stderr).toContain(`outside the maintenance window "daily 02:00-04:00" (Asia/Tokyo); it opens 2026-12-05T17:00:00Z`);
      writeFileSync(clockFile, "2026-12-05T17:30:00Z"); // 02:30 in Tokyo
      const r = await device.fioup("update");
      expect(r.code, r.stderr).toBe(0);
      expect(await httpGet(port)).toBe(v.body);
    } finally {
      clockFile = undefined;
      await gw.admin(`/admin/devices/${uuid}/labels`, { method: "PUT", body: JSON.stringify({ remove: ["timezone"] }) });
    }
  }, 180_000);

  test("a target the gateway withdraws while the install waits is not installed", async () => {
    clockFile = join(await tempDir("fioup-clock-"), "now");
    writeFileSync(clockFile, "2026-12-05T10:00:00Z");
    holdConfig(`install_window = "daily 02:00-04:00 UTC"`);
    try {
      const v = await publishNext(64 * 1024);
      expect((await device.fioup("update")).code).toBe(14);
      await gw.admin(`/admin/targets/${v.name}`, { method: "DELETE" });
      writeFileSync(clockFile, "2026-12-06T02:30:00Z"); // the window opens
      const r = await device.fioup("update");
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`Cannot install ${v.name}: the gateway stopped offering it while the install was deferred`);
      expect(device.updateState()?.state).toBe("canceled");
      expect(await httpGet(port)).toBe(`hold v${version - 1}`);
      const events = await holdEvents(v.name);
      expect(events.at(-1)).toMatchObject({ type: "UpdateHoldReleased", details: { releasedBy: "withdrawn" } });
    } finally {
      clockFile = undefined;
    }
  }, 180_000);
  test("--force does not install a target the gateway withdrew while the install waited: it overrides the window and the locks, not the gateway", async () => {
    clockFile = join(await tempDir("fioup-clock-"), "now");
    writeFileSync(clockFile, "2026-12-05T10:00:00Z");
    holdConfig(`install_window = "daily 02:00-04:00 UTC"`);
    const running = await httpGet(port);
    try {
      const v = await publishNext(64 * 1024);
      expect((await device.fioup("update")).code).toBe(14);
      await gw.admin(`/admin/targets/${v.name}`, { method: "DELETE" });
      const r = await device.fioup("update", "--force"); // the window is still shut
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`Cannot install ${v.name}: the gateway stopped offering it while the install was deferred`);
      expect(device.updateState()?.state).toBe("canceled");
      expect(await httpGet(port)).toBe(running);
      expect((await holdEvents(v.name)).at(-1)).toMatchObject({ type: "UpdateHoldReleased", details: { releasedBy: "withdrawn" } });
    } finally {
      clockFile = undefined;
    }
  }, 180_000);

  test("a target the device's new tags do not reach, set by the gateway while the install waits, is not installed, and fioup says the tags were why", async () => {
    clockFile = join(await tempDir("fioup-clock-"), "now");
    writeFileSync(clockFile, "2026-12-05T10:00:00Z");
    holdConfig(`install_window = "daily 02:00-04:00 UTC"`);
    const sotaToml = join(device.sotaDir, "sota.toml");
    const before = readFileSync(sotaToml, "utf8");
    const running = await httpGet(port);
    try {
      const v = await publishNext(64 * 1024);
      expect((await device.fioup("update")).code).toBe(14);
      const set = await gw.admin(`/admin/devices/${uuid}/tags`, { method: "PUT", body: JSON.stringify({ tags: ["elsewhere"] }) });
      expect(set).toMatchObject({ tags: ["elsewhere"] });
      writeFileSync(clockFile, "2026-12-06T02:30:00Z"); // the window opens
      const r = await device.fioup("update");
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`Cannot install ${v.name}: while the install was deferred the gateway moved this device from tags (none) to elsewhere, which ${v.name} is not for; the update is canceled`);
      expect(device.updateState()?.state).toBe("canceled");
      expect(await httpGet(port)).toBe(running);
    } finally {
      clockFile = undefined;
      // Clearing the gateway's tags does not reach the device (docs/formats.md): its file is put back too.
      await gw.admin(`/admin/devices/${uuid}/tags`, { method: "PUT", body: JSON.stringify({ tags: [] }) });
      writeFileSync(sotaToml, before);
    }
  }, 180_000);
});
