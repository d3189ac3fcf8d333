/**
 * A device whose clock is wrong, against a real gateway on loopback: the real fioup runs under
 * libfaketime (Debian's faketime: LD_PRELOAD, which Bun's Date and BoringSSL's certificate checks
 * both read through), the gateway on the real clock. A device without a battery-backed clock
 * boots in 1970 until NTP sets the time: TLS to the gateway then fails "not yet valid"; one set
 * years ahead sees the certificates expired; one a few days ahead sees TUF metadata expired,
 * which it must keep refusing (freeze-attack protection). Each case must say the clock is the
 * likely cause, what it reads and what to do, and the daemon must keep polling and recover by
 * itself once the time is set. A fetched update whose target has a maintenance window is not
 * installed on such a clock (at 1970 the window may look open when it is not): it waits for a
 * trustworthy clock, says so, and installs once the time is set and the window is open.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { EMPTY_SHA256 } from "../../lib/api/target.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { stopPid, tempDir, until } from "../harness/tmp.ts";

const MAIN = join(import.meta.dir, "../../fioup/main.ts");
const ARCH = process.arch === "arm64" ? "aarch64" : "x86_64";
const LIBFAKETIME = `/usr/lib/${ARCH}-linux-gnu/faketime/libfaketime.so.1`;
const DAY = 86400;

let gw: GatewayHandle;
let token: string;
let device: string; // FIOUP_ROOT of a device registered on the real clock
let uuid: string;

beforeAll(async () => {
  if (!existsSync(LIBFAKETIME)) throw new Error(`${LIBFAKETIME} is missing: install Debian's faketime (scripts/setup.sh)`);
  gw = await startGateway({ args: ["--polling-seconds", "1"] });
  const res = await gw.adminFetch("/admin/tokens", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ maxUses: 10 }) });
  token = ((await res.json()) as { token: string }).token;
  device = await tempDir("clock-device-");
  const reg = await fioup(device, undefined, ["register", "--server", gw.url, "--token", token, "--hwid", "amd64-linux"]);
  expect(reg.code).toBe(0);
  uuid = /Registered device (\S+)/.exec(reg.out)![1]!;
}, 120_000);
afterAll(() => gw?.stop(), 60_000);

/**
 * libfaketime's settings for a clock `offset` seconds off the real one, read from `file` on every
 * call (so a test can set the time under a running daemon). The monotonic clock stays real, as a
 * real clock change leaves it: timers keep their length.
 */
function fakeClock(file: string, offset: number): Record<string, string> {
  writeFileSync(file, `${offset >= 0 ? "+" : ""}${Math.round(offset)}s\n`);
  return { LD_PRELOAD: LIBFAKETIME, FAKETIME_TIMESTAMP_FILE: file, FAKETIME_NO_CACHE: "1", FAKETIME_DONT_FAKE_MONOTONIC: "1" };
}

/** Seconds from now back to 1970-01-01T00:00:10Z: a device that booted without a clock. */
const to1970 = () => 10 - Date.now() / 1000;

function spawnFioup(root: string, clock: Record<string, string> | undefined, args: string[]) {
  return Bun.spawn([process.execPath, MAIN, ...args], {
    env: { ...process.env, FIOUP_ROOT: root, DOCKER_HOST: "unix:///nonexistent.sock", ...clock },
    stdout: "pipe",
    stderr: "pipe",
  });
}

async function fioup(root: string, clock: Record<string, string> | undefined, args: string[]) {
  const p = spawnFioup(root, clock, args);
  const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code, out: out + err };
}

/** Everything a stream has said so far, kept up to date as it comes. */
function collect(stream: ReadableStream<Uint8Array>): { text: string } {
  const seen = { text: "" };
  void (async () => {
    const dec = new TextDecoder();
    for await (const chunk of stream) seen.text += dec.decode(chunk, { stream: true });
  })();
  return seen;
}

const ISO = String.raw`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`;

test("a device whose clock reads 1970 is told its clock is the likely cause, what it reads and to set the time: register, check and update", async () => {
  const dir = await tempDir("clock-1970-");
  const clock = fakeClock(join(dir, "faketime"), to1970());
  const notYet = new RegExp(
    String.raw`the server's certificate is not valid yet by this machine's clock, which reads 1970-01-01T00:0\d:\d\dZ: the clock is likely wrong \(a device without a battery-backed clock starts in 1970 until NTP sets it\); set the time \(enable NTP: timedatectl set-ntp true\) and try again`,
  );

  const fresh = join(dir, "fresh");
  mkdirSync(fresh);
  const reg = await fioup(fresh, clock, ["register", "--server", gw.url, "--token", token, "--hwid", "amd64-linux"]);
  expect(reg.out).toMatch(new RegExp(String.raw`^fioup register: Cannot register with https://127\.0\.0\.1:\d+: ` + notYet.source));
  expect(reg.code).toBe(31);

  const check = await fioup(device, clock, ["check"]);
  expect(check.out).toMatch(new RegExp(String.raw`fioup check: Cannot fetch TUF metadata \d+\.root\.json: request to \S+ failed: ` + notYet.source));
  expect(check.code).toBe(31);

  const update = await fioup(device, clock, ["update"]);
  expect(update.out).toMatch(new RegExp(String.raw`fioup update: Cannot fetch TUF metadata \d+\.root\.json: request to \S+ failed: ` + notYet.source));
  expect(update.code).toBe(31);
}, 120_000);

test("a clock five years ahead sees the gateway's certificate expired, and is told to set the time if that is not the time", async () => {
  const dir = await tempDir("clock-ahead-");
  const check = await fioup(device, fakeClock(join(dir, "faketime"), 5 * 366 * DAY), ["check"]);
  expect(check.out).toMatch(
    new RegExp(
      String.raw`fioup check: Cannot fetch TUF metadata \d+\.root\.json: request to \S+ failed: the server's certificate has expired by this machine's clock, which reads ${ISO}: ` +
        String.raw`if that is not the time, set the time \(enable NTP: timedatectl set-ntp true\) and try again; if it is, the server's certificate must be renewed`,
    ),
  );
  expect(check.code).toBe(31);
}, 120_000);

test("a clock days ahead still refuses the expired timestamp, and the message sets its expiry against the device's clock", async () => {
  const dir = await tempDir("clock-days-");
  const check = await fioup(device, fakeClock(join(dir, "faketime"), 3 * DAY), ["check"]);
  const m = new RegExp(
    String.raw`fioup check: Cannot verify TUF metadata timestamp\.json: expired at (${ISO}) by this machine's clock, which reads (${ISO}): ` +
      String.raw`if that is not the time, set the time \(enable NTP: timedatectl set-ntp true\) and check again; ` +
      String.raw`if it is, the gateway has stopped re-signing its metadata \(or an old copy is being replayed\): tell the gateway's admin`,
  ).exec(check.out);
  expect(check.out).toMatch(/Cannot verify TUF metadata timestamp\.json: expired at/);
  expect(m).not.toBeNull();
  expect(Date.parse(m![2]!) - Date.now()).toBeGreaterThan(2.9 * DAY * 1000); // the device's clock, not the real one
  expect(Date.parse(m![1]!)).toBeLessThan(Date.parse(m![2]!));
  expect(check.code).toBe(30); // refused: the freeze-attack check is not relaxed
}, 120_000);

test("the daemon on a 1970 clock keeps polling, says why, and recovers by itself once the time is set", async () => {
  const dir = await tempDir("clock-daemon-");
  const file = join(dir, "faketime");
  const daemon = spawnFioup(device, fakeClock(file, to1970()), ["daemon"]);
  const log = collect(daemon.stderr);
  collect(daemon.stdout);
  try {
    const text = () => log.text;
    const clockLines = (t: string) => t.split("\n").filter((l) => /update failed: .*not valid yet by this machine's clock, which reads 1970-/.test(l));
    await until("two failed polls naming the clock", text, (t) => clockLines(t).length >= 2, 30_000, 200);
    expect(daemon.exitCode).toBeNull(); // still running: no exit, no crash loop

    const before = text().length;
    writeFileSync(file, "+0s\n"); // NTP sets the time
    const setAt = Date.now();
    // The gateway hears from the device again, and the device verifies its metadata: with nothing
    // published for it, the poll now ends in "no target", past TLS and TUF.
    const lastSeen = async () => {
      const res = await gw.adminFetch("/admin/devices");
      const { devices } = (await res.json()) as { devices: { uuid: string; lastSeen: string | null }[] };
      return Date.parse(devices.find((d) => d.uuid === uuid)?.lastSeen ?? "") || 0;
    };
    await until("the device seen by the gateway after its clock was set", lastSeen, (t) => t >= setAt - 1000, 30_000, 200);
    await until("a poll past TLS and TUF after the clock was set", () => text().slice(before), (t) => /nothing to run yet: no target for hardware id amd64-linux and tags \(any\) in targets.json version \d+/.test(t), 30_000, 200);
    expect(daemon.exitCode).toBeNull();
  } finally {
    await stopPid(daemon.pid);
  }
}, 120_000);

test("a daemon whose clock makes it refuse the timestamp backs off towards its poll interval: it does not ask again at once, back to back", async () => {
  // The owner's drop-in sets a 10 s poll; the gateway's push answers the daemon as soon as a newer
  // timestamp than the one it trusts exists, and the one it refuses leaves its trusted one behind.
  mkdirSync(join(device, "etc/sota/conf.d"), { recursive: true });
  writeFileSync(join(device, "etc/sota/conf.d/90-poll.toml"), "[uptane]\npolling_seconds = 10\n");
  const dir = await tempDir("clock-spin-");
  const daemon = spawnFioup(device, fakeClock(join(dir, "faketime"), 3 * DAY), ["daemon"]);
  const log = collect(daemon.stderr);
  collect(daemon.stdout);
  try {
    await Bun.sleep(10_000);
    const checks = log.text.split("\n").filter((l) => /update failed: .*expired/.test(l)).length;
    expect(checks, log.text.slice(-2000)).toBeGreaterThanOrEqual(1);
    expect(checks).toBeLessThanOrEqual(5); // 370 in 10 s before; now after 1, 2, 4 s ... up to the poll interval
  } finally {
    await stopPid(daemon.pid);
    rmSync(join(device, "etc/sota/conf.d/90-poll.toml"));
  }
}, 60_000);

test("a fetched update with a maintenance window waits for a trustworthy clock at 1970, says why, and installs once the time is set", async () => {
  const dir = await tempDir("clock-window-");
  const root = join(dir, "device");
  mkdirSync(root);
  const hwid = "amd64-clock-window"; // its own hardware id: the other devices here see no target
  const reg = await fioup(root, undefined, ["register", "--server", gw.url, "--token", token, "--hwid", hwid]);
  expect(reg.code).toBe(0);
  const devUuid = /Registered device (\S+)/.exec(reg.out)![1]!;
  // A window open now (UTC), from an hour before to two after; the 1970 clock below reads the same
  // time of day, so by it the window looks open too.
  const hour = new Date().getUTCHours();
  const hh = (h: number) => String((h + 24) % 24).padStart(2, "0");
  const window = `daily ${hh(hour - 1)}:00-${hh(hour + 2)}:00 UTC`;
  mkdirSync(join(root, "etc/sota/conf.d"), { recursive: true });
  writeFileSync(join(root, "etc/sota/conf.d/60-window.toml"), `[fioup]\ninstall_window = "${window}"\n`);
  // A target with no apps: fetch, install and start need no container engine.
  const entry = { length: 0, hashes: { sha256: EMPTY_SHA256 }, custom: { version: "2", hardwareIds: [hwid], tags: ["main"], docker_compose_apps: {} } };
  const res = await gw.adminFetch("/admin/targets", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ targets: { [`${hwid}-2`]: entry } }) });
  expect(res.status).toBeLessThan(300);
  const fetched = await fioup(root, undefined, ["fetch"]);
  expect(fetched.code, fetched.out).toBe(0);

  // The device reboots without a clock: 1970, at today's time of day.
  const file = join(dir, "faketime");
  const clock = fakeClock(file, -Math.floor(Date.now() / 86400_000) * DAY);
  const waiting = String.raw`waiting for a trustworthy clock: this machine's clock reads 1970-01-01T\d\d:\d\d:\d\dZ, before this release was made, so it cannot tell whether the maintenance window "${window}" \(UTC\) is open; set the time \(enable NTP: timedatectl set-ntp true\)`;
  const install = await fioup(root, clock, ["install"]);
  expect(install.out).toMatch(new RegExp(String.raw`fioup install: Install of ${hwid}-2 deferred: ` + waiting));
  expect(install.code).toBe(14);
  const st = await fioup(root, clock, ["status", "--no-apps"]);
  expect(st.out).toMatch(new RegExp(String.raw`Install deferred since ${ISO}: ` + waiting));
  const stJson = JSON.parse((await fioup(root, clock, ["status", "--no-apps", "--format", "json"])).out);
  expect(stJson.hold).toMatchObject({ reason: "clock", window, zone: "UTC" });
  expect(stJson.pending.state).toBe("fetched");

  // The daemon at boot resumes the update: it holds at every check while the clock reads 1970...
  const daemon = spawnFioup(root, clock, ["daemon"]);
  const log = collect(daemon.stderr);
  collect(daemon.stdout);
  try {
    const holds = () => log.text.split("deferred: waiting for a trustworthy clock").length - 1;
    await until("two checks holding for the clock", holds, (n) => n >= 2, 30_000, 200);
    expect(log.text).not.toMatch(/updated to/);
    // ...and once NTP sets the time, the next check judges the window (open) and installs: the
    // gateway hears why the install waited, what ended the wait, and the new target running.
    // (Pruning after it needs a container engine, which this device lacks: it stays "completing".)
    writeFileSync(file, "+0s\n");
    const events = async () => {
      const r = await gw.adminFetch(`/admin/devices/${devUuid}/updates`);
      return ((await r.json()) as { updates: { events: any[] }[] }).updates.flatMap((u) => u.events);
    };
    const installed = (es: any[]) => es.some((e) => e.eventType.id === "EcuInstallationCompleted" && e.event.success === true);
    const seen = await until("the install, at the gateway, once the time is set", events, installed, 30_000, 200);
    const of = (type: string) => seen.filter((e) => e.eventType.id === type).map((e) => JSON.parse(e.event.details));
    expect(of("UpdateDeferred")).toEqual([expect.objectContaining({ reason: "clock", until: null, window, timeZone: "UTC" })]);
    expect(of("UpdateHoldReleased")).toEqual([expect.objectContaining({ releasedBy: "clock" })]);
    expect(log.text).toContain(`install ${hwid}-2`);
  } finally {
    await stopPid(daemon.pid);
  }
}, 120_000);
