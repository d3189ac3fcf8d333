/**
 * What ships is what is tested: the fioup end-to-end flow (test/fioup/update.test.ts: register,
 * update to v1, a v2 that changes one service, a v3 that crashes and is rolled back, then
 * fetch / install / start step by step and a cancel) run again with the compiled binaries in
 * place of `bun <entry>.ts`:
 *
 * - dist/fioup-linux-x64 against dist/gateway-linux-x64 (serve and publish): the whole flow;
 * - dist/fioup-linux-arm64 under qemu-aarch64-static (Debian's arm64 libc as sysroot) against
 *   the same x64 gateway: in npm test its first case (register over TLS with the token, check,
 *   the whole update to v1 with TUF, blobs, SQLite and docker compose, status, events), which
 *   exercises every part of the arm64 runtime the flow uses; the later cases run the same code
 *   paths again (already proven by the x64 binary) and take a minute under emulation, so the
 *   whole flow on arm64 runs in `npm run reliability` (RELIABILITY_FULL=1).
 *
 * The harness picks the binaries up from $FIOUP_BIN and $GATEWAY_BIN, so the flow is the one
 * the source tree is tested with, not a second copy of it. The two tests are concurrent, each
 * starting its own run (own gateway, registry, device and app; the shared dockerd): most of a run
 * is waiting on docker-compose and the apps' settle time, so side by side they take little more
 * than the longer one, and a `-t` that selects one test starts only that run.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { binaryPath, build } from "../../scripts/build.ts";
import { ensureSysroot } from "../../scripts/sysroot.ts";
import { stopPid, tempDir } from "../harness/tmp.ts";
import { FULL } from "../reliability/_tally.ts";

const ROOT = join(import.meta.dir, "../..");
const FIRST_CASE = "register, then update to v1";
let sysroot: string;

beforeAll(async () => {
  const log = (l: string) => console.error(l);
  // Only what this file runs: gateway and fioup for x64, fioup for arm64 (binaries.test.ts builds the rest).
  [, , sysroot] = await Promise.all([
    build({ names: ["gateway", "fioup"], arches: ["x64"], ifStale: true, log }),
    build({ names: ["fioup"], arches: ["arm64"], ifStale: true, log }),
    ensureSysroot(log),
  ]);
}, 900_000);

/** The runs still going: a test that timed out leaves its run here, and afterAll stops it. */
const live = new Set<number>();

afterAll(async () => {
  // SIGTERM, then SIGKILL: the run's own watchdog then stops the services it started.
  await Promise.all([...live].map((pid) => stopPid(pid, 10_000)));
});

/** Runs the fioup e2e file (only the cases matching `only`, if given) with the given binaries. */
async function flow(env: Record<string, string>, only?: string): Promise<{ code: number; summary: string; out: string }> {
  const proc = Bun.spawn([process.execPath, "test", "--timeout", "600000", ...(only ? ["-t", only] : []), "test/fioup/update.test.ts"], {
    cwd: ROOT,
    env: { ...process.env, ...env, BUN_BE_BUN: undefined },
    stdout: "pipe",
    stderr: "pipe",
  });
  live.add(proc.pid);
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]).finally(() =>
    live.delete(proc.pid),
  );
  const all = out + err;
  return { code, summary: all.split("\n").filter((l) => /^\s*\d+ (pass|fail)$|^\((pass|fail)\)/.test(l)).join("\n"), out: all };
}

describe("the compiled binaries run the whole update flow", () => {
  test.concurrent("fioup-linux-x64 against gateway-linux-x64: register, update, change, update, rollback", async () => {
    const r = await flow({ FIOUP_BIN: binaryPath("fioup", "x64"), GATEWAY_BIN: binaryPath("gateway", "x64") });
    expect(r.summary, r.out.slice(-3000)).toContain("(pass) fioup update > v3 whose container exits at once rolls back");
    expect(r.summary, r.out.slice(-3000)).toMatch(/^\s*0 fail$/m);
    expect(r.code).toBe(0);
  }, 900_000);

  test.concurrent(`fioup-linux-arm64 under qemu-user against the x64 gateway: ${FULL ? "the same flow" : "register and the first update"}`, async () => {
    const wrapper = join(await tempDir("fioup-arm64-"), "fioup");
    writeFileSync(wrapper, `#!/bin/sh\nexec qemu-aarch64-static -L ${sysroot} ${binaryPath("fioup", "arm64")} "$@"\n`);
    chmodSync(wrapper, 0o755);
    const r = await flow({ FIOUP_BIN: wrapper, GATEWAY_BIN: binaryPath("gateway", "x64") }, FULL ? undefined : FIRST_CASE);
    expect(r.summary, r.out.slice(-3000)).toContain(`(pass) fioup update > ${FIRST_CASE}`);
    if (FULL) expect(r.summary, r.out.slice(-3000)).toContain("(pass) fioup update > v3 whose container exits at once rolls back");
    expect(r.summary, r.out.slice(-3000)).toMatch(FULL ? /^\s*[1-9]\d* pass$/m : /^\s*1 pass$/m);
    expect(r.summary, r.out.slice(-3000)).toMatch(/^\s*0 fail$/m);
    expect(r.code).toBe(0);
  }, 1_800_000);
});
