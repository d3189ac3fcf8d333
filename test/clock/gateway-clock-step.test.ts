/**
 * A gateway replica whose wall clock steps (NTP correcting it by an hour, back or forward) while
 * it runs: replica B runs under libfaketime (Debian's faketime: LD_PRELOAD, read from a file on
 * every call so the test steps it under the running process; the monotonic clock stays real, as
 * a real step leaves it), replica A on the real clock, both on one PostgreSQL. What B caches and
 * the deadlines of its connections are durations: a step must neither stretch them (a device
 * revoked through A passing mTLS on B for an hour, B serving TUF metadata older than A's, slow
 * clients never cut) nor cut them short (every open connection cut at once).
 */
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { EMPTY_SHA256 } from "../../lib/api/target.ts";
import { startGateway, startReplica, type GatewayHandle } from "../harness/gateway.ts";
import { startPostgres, type PostgresHandle } from "../harness/postgres.ts";
import { tempDir } from "../harness/tmp.ts";

const MAIN = join(import.meta.dir, "../../fioup/main.ts");
const ARCH = process.arch === "arm64" ? "aarch64" : "x86_64";
const LIBFAKETIME = `/usr/lib/${ARCH}-linux-gnu/faketime/libfaketime.so.1`;
const HOUR = 3600;
/** B's --head-timeout, seconds. */
const HEAD_TIMEOUT = 3;

let pg: PostgresHandle;
let a: GatewayHandle;
let b: GatewayHandle;
/** libfaketime's offset file for B. */
let clockFile: string;

/** Steps B's wall clock to `offset` seconds off the real one. */
const stepB = (offset: number) => writeFileSync(clockFile, `${offset >= 0 ? "+" : ""}${offset}s\n`);

beforeAll(async () => {
  if (!existsSync(LIBFAKETIME)) throw new Error(`${LIBFAKETIME} is missing: install Debian's faketime (scripts/setup.sh)`);
  pg = await startPostgres();
  const db = await pg.createDatabase("clockstep");
  const args = ["--registry-dir", join(await tempDir("clock-step-registry-"), "registry")];
  a = await startGateway({ db, args });
  clockFile = join(await tempDir("clock-step-"), "faketime");
  stepB(0);
  b = await startReplica(a, {
    db,
    args: [...args, "--head-timeout", String(HEAD_TIMEOUT)],
    env: { LD_PRELOAD: LIBFAKETIME, FAKETIME_TIMESTAMP_FILE: clockFile, FAKETIME_NO_CACHE: "1", FAKETIME_DONT_FAKE_MONOTONIC: "1" },
  });
}, 180_000);
afterEach(() => stepB(0));
afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await pg?.stop();
}, 120_000);

/** Publishes an empty target `amd64-linux-N` through A. */
async function publishThroughA(n: number) {
  const entry = { length: 0, hashes: { sha256: EMPTY_SHA256 }, custom: { version: String(n), hardwareIds: ["amd64-linux"], tags: ["main"], docker_compose_apps: {} } };
  const res = await a.adminFetch("/admin/targets", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ targets: { [`amd64-linux-${n}`]: entry } }) });
  expect(res.status, await res.text()).toBeLessThan(300);
}

async function fioup(root: string, args: string[]) {
  const p = Bun.spawn([process.execPath, MAIN, ...args], { env: { ...process.env, FIOUP_ROOT: root, DOCKER_HOST: "unix:///nonexistent.sock" }, stdout: "pipe", stderr: "pipe" });
  const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code, out: out + err };
}

test("a device revoked through A is refused by B within the device cache's 5 s, though B's clock stepped back an hour", async () => {
  const res = await a.adminFetch("/admin/tokens", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ maxUses: 1 }) });
  const token = ((await res.json()) as { token: string }).token;
  const device = await tempDir("clock-step-device-");
  const reg = await fioup(device, ["register", "--server", b.url, "--token", token, "--hwid", "amd64-linux"]);
  expect(reg.code, reg.out).toBe(0);
  const uuid = /Registered device (\S+)/.exec(reg.out)![1]!;
  await publishThroughA(1); // something to check for
  const before = await fioup(device, ["check"]); // B holds the device's row now
  expect(before.code, before.out).toBe(0);
  stepB(-HOUR);
  expect((await a.adminFetch(`/admin/devices/${uuid}/revoke`, { method: "POST" })).status).toBe(200);
  await Bun.sleep(6000);
  const after = await fioup(device, ["check"]);
  expect(after.code).not.toBe(0);
  expect(after.out).toMatch(/revoked/i);
}, 120_000);

test("B serves the timestamp.json A published within the TUF cache's 1 s, though B's clock stepped back an hour", async () => {
  const version = async (gw: GatewayHandle) => ((await (await gw.adminFetch("/repo/timestamp.json")).json()) as { signed: { version: number } }).signed.version;
  await version(b); // cached on B
  stepB(-HOUR);
  await version(b);
  await publishThroughA(2);
  await Bun.sleep(2000);
  expect(await version(b)).toBe(await version(a));
}, 60_000);

/** Opens a TCP connection to B that sends nothing, steps B's clock by `offset` s 500 ms later; ms until B closes it (-1: still open after 15 s). */
function silentThroughStep(offset: number): Promise<number> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const sock = connect(b.port, "127.0.0.1");
    const step = setTimeout(() => stepB(offset), 500);
    const cap = setTimeout(() => done(-1), 15_000);
    const done = (ms: number) => {
      clearTimeout(step);
      clearTimeout(cap);
      sock.destroy();
      resolve(ms);
    };
    const closed = () => done(performance.now() - t0);
    sock.on("close", closed);
    sock.on("error", closed);
    sock.on("end", closed);
  });
}

test("a connection that sends nothing is cut at B's head timeout whichever way B's clock steps under it", async () => {
  const back = await silentThroughStep(-HOUR);
  expect(back).toBeGreaterThan(HEAD_TIMEOUT * 1000 - 500);
  expect(back).toBeLessThan(HEAD_TIMEOUT * 1000 + 1500);
  stepB(0);
  const forward = await silentThroughStep(HOUR);
  expect(forward).toBeGreaterThan(HEAD_TIMEOUT * 1000 - 500);
  expect(forward).toBeLessThan(HEAD_TIMEOUT * 1000 + 1500);
}, 60_000);
