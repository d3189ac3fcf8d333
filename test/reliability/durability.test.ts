/**
 * Durability: one real `fioup update` (v1 → v2) runs under strace, and the trace of its file
 * system calls is checked and replayed (test/reliability/_crash-explorer.ts):
 *
 * 1. Order: every file renamed into place under the device root (blobs, config and compose
 *    files, TUF metadata) was fsynced after its last write, and its directory was fsynced
 *    after the rename; every write to fioup.db and its WAL was fsynced before the next rename.
 * 2. Power cuts: the on-disk trees a power cut could have left at each fsync and rename
 *    (unsynced writes dropped or torn, renames not yet durable undone) are written back into
 *    the device root one by one, and fioup's recovery (the next `fioup update`) must end each
 *    on one whole target: v2 current and serving, its container on v2's image, every blob
 *    matching its digest, fioup.db passing integrity_check.
 *
 * The container engine is not rolled back per state (dockerd's own crash safety is not fioup's):
 * each state starts with v2 running, as the traced update left it; after a state that ended
 * elsewhere, the device is brought back there (pre-update tree, then a clean update) so one
 * failure does not leak into the next state.
 * Default: the order check and 4 crash states spread over the update; RELIABILITY_FULL=1: all.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  deviceOnV1,
  Device, Publisher, collectCli, freePort, httpGet, httpdCompose, httpdImage, pushImageDetailed, startDockerRegistry,
  startDockerd, startTestGateway, ROOT, type DockerRegistryHandle, type DockerdHandle, type TestGateway,
} from "../fioup/_setup.ts";
import { tempDir } from "../harness/tmp.ts";
import { explore, materialize, parseTrace, readDirs, readTree, straceCommand, type Exploration } from "./_crash-explorer.ts";
import { FULL, Tally } from "./_tally.ts";

const tally = new Tally("durability");
const APP = `reldur${process.pid}`;
const SAMPLE = 4;
let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gw: TestGateway;
let device: Device;
let port: number;
let x: Exploration;
let v2Image: string;
let initial: Map<string, Buffer>;

beforeAll(async () => {
  [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startTestGateway()]);
  port = await freePort();
  device = await Device.create(dockerd);
  const { pub } = await deviceOnV1({ gw, upstream, device, app: APP, repo: `rel/dur${process.pid}`, port, body: "dur v1" });

  const v2 = await pushImageDetailed(upstream, `rel/dur${process.pid}`, "v2", {
    ...httpdImage("dur v2"),
    layers: [{ "/www/index.html": "dur v2" }, { "/www/extra.txt": "x".repeat(300_000) }],
  });
  v2Image = v2.image.configDigest;
  await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(v2.ref, port) });
  await pub.publish(2);

  initial = readTree(device.root);
  const traceFile = join(await tempDir("rel-dur-trace-"), "trace");
  const cmd = process.env.FIOUP_BIN ? [process.env.FIOUP_BIN] : [process.execPath, join(ROOT, "fioup/main.ts")];
  const proc = Bun.spawn(straceCommand(traceFile, [...cmd, "update", "--format", "json"]), {
    env: { ...process.env, ...device.env() },
    stdout: "pipe",
    stderr: "pipe",
    cwd: ROOT,
  });
  const r2 = await collectCli(proc, "strace fioup update");
  if (r2.code !== 0) throw new Error(`traced v2 update failed: ${r2.stderr}`);
  const trace = readFileSync(traceFile, "utf8");
  if (!trace.trim()) throw new Error(`strace recorded nothing: ${r2.stderr.slice(-500)}`);
  const calls = parseTrace(trace);
  if (!calls.length) throw new Error(`Cannot read the strace output (${trace.length} bytes): ${trace.slice(0, 300)}`);
  x = explore(device.root, initial, calls, { stateFiles: /(^|\/)fioup\.db(-wal)?$/ });
}, 300_000);

afterAll(async () => {
  tally.print();
  await device?.cleanup([APP]).catch(() => {});
  await Promise.all([gw?.stop(), upstream?.stop()]);
  await dockerd?.stop();
});

function dbIntegrity(): string {
  const db = new Database(join(device.sotaDir, "fioup.db"), { readonly: true });
  try {
    return db.query<{ integrity_check: string }, []>("PRAGMA integrity_check").get()!.integrity_check;
  } finally {
    db.close();
  }
}

describe("fioup update under strace", () => {
  test("fsyncs each file before renaming it into place and its directory after, and each state write before the next step", () => {
    const byKind = (k: string) => x.violations.filter((v) => v.kind === k).map((v) => `${v.path}: ${v.detail}`);
    tally.record(
      "fsync order of blob, config and state writes",
      x.violations.length ? "failed" : "survived",
      `${x.calls} file syscalls, ${x.renames} renames, ${x.fsyncs} fsyncs; ${x.violations.length} violation(s)` +
        (x.violations.length ? `: ${x.violations.slice(0, 3).map((v) => `${v.kind} ${v.path}`).join("; ")}` : ""),
    );
    expect(x.renames).toBeGreaterThan(3); // blobs and compose files were committed by rename
    expect(byKind("rename-before-fsync")).toEqual([]);
    expect(byKind("rename-not-durable")).toEqual([]);
    expect(byKind("state-not-synced")).toEqual([]);
  });

  test("every crash state a power cut could leave recovers to one whole target", async () => {
    const states = FULL ? x.states : x.states.filter((_, i) => i % Math.max(1, Math.floor(x.states.length / SAMPLE)) === 0).slice(0, SAMPLE);
    const dirs = readDirs(device.root);
    const failures: string[] = [];
    for (const s of states) {
      materialize(device.root, s, dirs);
      const r = await device.fioup("update");
      const st = await device.fioup("status", "--no-apps");
      const running = (await dockerd.docker("ps", "--filter", `label=com.docker.compose.project=${APP}`, "--format", "{{.ID}}")).trim().split("\n").filter(Boolean);
      const images = await Promise.all(running.map(async (id) => (await dockerd.docker("inspect", "--format", "{{.Image}}", id)).trim()));
      const served = await httpGet(port);
      const bad = device.corruptBlobs();
      const integrity = dbIntegrity();
      const ok =
        (r.code === 0 || r.code === 3) &&
        st.json?.current?.name === "amd64-linux-2" &&
        running.length === 1 &&
        images[0] === v2Image &&
        served === "dur v2" &&
        bad.length === 0 &&
        integrity === "ok";
      const detail = `rerun exit ${r.code}; current ${st.json?.current?.name}; ${running.length} container(s); serves ${JSON.stringify(served)}; bad blobs ${bad.length}; db ${integrity}`;
      tally.record(`crash state ${s.at}: ${s.label}`, ok ? "survived" : "failed", detail);
      if (!ok) {
        failures.push(`${s.label}: ${detail}${r.code !== 0 && r.code !== 3 ? `\n${r.stderr.slice(-600)}` : ""}`);
        materialize(device.root, { at: 0, label: "before the update", files: initial }, dirs);
        const reset = await device.fioup("update");
        if (reset.code !== 0) throw new Error(`cannot bring the device back to v2 after a failed state: ${reset.stderr}`);
      }
    }
    process.stderr.write(`[durability] crash points ${x.points}, distinct crash states ${x.states.length}, explored ${states.length}\n`);
    expect(states.length).toBeGreaterThan(0);
    expect(failures).toEqual([]);
  }, 1_800_000);
});
