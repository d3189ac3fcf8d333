/**
 * Power cuts at named points: the real fioup (`bun fioup/main.ts update`, or $FIOUP_BIN) kills
 * itself with SIGKILL at a point named by FIOUP_FAULT (fioup/fault.ts): mid-blob at several
 * byte offsets, after the n-th blob commit, and right after each saved state. The hook writes a
 * marker line before dying; a run that ends without that marker did not cut where the case
 * meant to, and counts as "not tried", never as survived.
 *
 * After each cut, the next `fioup update` must end on one whole target: status names it,
 * exactly one container of the app runs and it is that target's image, every committed blob
 * matches its digest, fioup.db passes integrity_check. Bytes are counted by the gateway
 * (registry bytes served to this device, from /metrics), not by fioup:
 * - the rerun fetches at most what was not on disk when it started (no durable byte twice),
 *   plus the 4-byte gzip trailer each missing layer's space estimate reads;
 * - across both runs: at most the update's size plus what was in flight when the kill landed
 *   (served by the gateway but not yet on disk: socket and runtime buffers), reported, and
 *   kept under a 12 MiB budget;
 * - a cut once the update was fetched: zero layer bytes on the rerun.
 * A `state:<state>` cut finds that state in fioup.db (it fires once the state is durable), and
 * the new current target from `started` on.
 * Default: 5 points; RELIABILITY_FULL=1: all 14.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import {
  deviceOnV1,
  Device, Publisher, ROOT, asTestGateway, freePort, httpGet, httpdCompose, httpdImage, pushImageDetailed, randomBytes,
  startDockerRegistry, startDockerd, type DockerRegistryHandle, type DockerdHandle,
} from "../fioup/_setup.ts";
import { servedBytes, startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { tempDir } from "../harness/tmp.ts";
import { FULL, Tally } from "./_tally.ts";
import { reached, type UpdateState } from "../../fioup/update/states.ts";

const tally = new Tally("power-cut");
const APP = `relcut${process.pid}`;
const MiB = 1 << 20;
const BIG = 6 * MiB;

interface Point {
  /** FIOUP_FAULT */
  fault: string;
  nth?: number;
  offset?: number;
}
const label = (p: Point) => (p.offset ? `${p.fault} @ ${p.offset} B` : p.nth ? `${p.fault} #${p.nth}` : p.fault);
const FETCH_STATES = new Set(["state:initialized", "state:fetching", "mid-blob", "blob-committed"]);

const ALL: Point[] = [
  { fault: "mid-blob", offset: 64 * 1024 },
  { fault: "mid-blob", offset: 1 * MiB },
  { fault: "mid-blob", offset: 4 * MiB },
  { fault: "blob-committed", nth: 1 },
  { fault: "blob-committed", nth: 2 },
  { fault: "blob-committed", nth: 3 },
  ...["initialized", "fetching", "fetched", "installing", "installed", "starting", "started", "completing"].map((s) => ({ fault: `state:${s}` })),
];
const POINTS: Point[] = FULL
  ? ALL
  : [{ fault: "mid-blob", offset: 1 * MiB }, { fault: "blob-committed", nth: 1 }, { fault: "state:fetched" }, { fault: "state:installing" }, { fault: "state:started" }];

/**
 * Budget for bytes served but not on disk when the process dies: the kernel's socket buffers
 * (on loopback the receive buffer autotunes to several MiB: up to 7 MB measured here, i.e.
 * nearly all of an 8 MB update can be in flight at an early cut) and the HTTP client's
 * read-ahead. The precise check is the rerun's: it must not fetch what was on disk.
 */
const INFLIGHT_MAX = 12 * MiB;

let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gwh: GatewayHandle;
let device: Device;
let pub: Publisher;
let port: number;
let client: string;
let reportDir: string;

beforeAll(async () => {
  [dockerd, upstream, gwh] = await Promise.all([startDockerd(), startDockerRegistry(), startGateway({ args: ["--polling-seconds", "1"] })]);
  const gw = asTestGateway(gwh);
  port = await freePort();
  reportDir = await tempDir("rel-cut-report-");
  device = await Device.create(dockerd);
  const v1 = await deviceOnV1({ gw, upstream, device, app: APP, repo: `rel/cut${process.pid}`, port, body: "cut v1" });
  pub = v1.pub;
  client = `device:${v1.uuid}`;
}, 180_000);

afterAll(async () => {
  tally.print();
  await device?.cleanup([APP]).catch(() => {});
  await Promise.all([gwh?.stop(), upstream?.stop()]);
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

/** What the cut left in fioup.db: the newest update's state and the current target's name. */
function savedAtCut(): { state: string; current: string | undefined } {
  const db = new Database(join(device.sotaDir, "fioup.db"), { readonly: true });
  try {
    const state = db.query<{ state: string }, []>("SELECT state FROM updates ORDER BY rowid DESC LIMIT 1").get()!.state;
    const cur = db.query<{ value: string }, []>("SELECT value FROM kv WHERE key = 'current_target'").get();
    return { state, current: cur ? (JSON.parse(cur.value) as { name: string }).name : undefined };
  } finally {
    db.close();
  }
}

/** Bytes of the store on disk: committed blobs (digest → size) and partial downloads. */
function onDisk(): { blobs: Map<string, number>; partial: number } {
  const blobs = new Map<string, number>();
  const dir = join(device.storeDir, "blobs/sha256");
  for (const f of existsSync(dir) ? readdirSync(dir) : []) blobs.set(f, statSync(join(dir, f)).size);
  const ingest = join(device.storeDir, "ingest");
  let partial = 0;
  for (const f of existsSync(ingest) ? readdirSync(ingest) : []) partial += statSync(join(ingest, f)).size;
  return { blobs, partial };
}

/** A manifest (fetched through /manifests, not /blobs) stored in the blob store. */
function isManifest(hex: string): boolean {
  try {
    const j = JSON.parse(readFileSync(join(device.storeDir, "blobs/sha256", hex), "utf8"));
    return typeof j === "object" && j !== null && "schemaVersion" in j;
  } catch {
    return false;
  }
}

describe("fioup killed with SIGKILL at named points", () => {
  POINTS.forEach((p, i) => {
    const version = i + 2;
    test(`${label(p)}: the next run ends on target ${version}, fetching no durable byte twice`, async () => {
      const body = `cut v${version}`;
      const { ref, image } = await pushImageDetailed(upstream, `rel/cut${process.pid}`, `v${version}`, {
        ...httpdImage(body),
        layers: [{ "/www/index.html": body }, { "/big.bin": randomBytes(BIG) }, { "/big2.bin": randomBytes(2 * MiB) }],
      });
      await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(ref, port) });
      await pub.publish(version);

      const before = onDisk();
      const s0 = await servedBytes(gwh, client);
      const report = join(reportDir, `cut-${i}.jsonl`);
      const fioup = process.env.FIOUP_BIN ? [process.env.FIOUP_BIN] : [process.execPath, join(ROOT, "fioup/main.ts")];
      const cut = Bun.spawn([...fioup, "update", "--format", "json"], {
        env: {
          ...process.env,
          ...device.env(),
          FIOUP_FAULT: p.fault,
          FIOUP_FAULT_NTH: String(p.nth ?? 1),
          FIOUP_FAULT_OFFSET: String(p.offset ?? 0),
          FIOUP_FAULT_REPORT: report,
        },
        stdout: "pipe",
        stderr: "pipe",
        cwd: ROOT,
      });
      const [, cutErr] = await Promise.all([new Response(cut.stdout).text(), new Response(cut.stderr).text(), cut.exited]);
      const marker = existsSync(report) ? (JSON.parse(readFileSync(report, "utf8").trim().split("\n")[0]!) as { point: string; detail: { onDisk?: number } }) : undefined;
      const hit = cut.signalCode === "SIGKILL" && marker?.point === p.fault;
      const s1 = await servedBytes(gwh, client);
      const atRestart = onDisk();
      // A state:<state> point fires once that state is durable (with what commits with it: started
      // with the new current target), so the rerun resumes from that very state.
      const saved = p.fault.startsWith("state:") ? savedAtCut() : undefined;

      const r = await device.fioup("update");
      const s2 = await servedBytes(gwh, client);
      const after = onDisk();
      const st = await device.fioup("status", "--no-apps");
      const current = st.json?.current?.name;
      const running = (await dockerd.docker("ps", "--filter", `label=com.docker.compose.project=${APP}`, "--format", "{{.ID}}")).trim().split("\n").filter(Boolean);
      const imageIds = await Promise.all(running.map(async (id) => (await dockerd.docker("inspect", "--format", "{{.Image}}", id)).trim()));
      const served = await httpGet(port);
      const bad = device.corruptBlobs();
      const integrity = dbIntegrity();

      // The update's size as the disk shows it: blobs new since before the cut, fetched through /blobs.
      const fetchedBlobs = [...after.blobs].filter(([hex]) => !before.blobs.has(hex) && !isManifest(hex));
      const updateSize = fetchedBlobs.reduce((n, [, size]) => n + size, 0);
      // fioup's space check reads each missing gzip layer's 4-byte trailer once per run (a Range request).
      const probes = 4 * fetchedBlobs.length;
      const durableAtRestart = fetchedBlobs.reduce((n, [hex, size]) => n + (atRestart.blobs.has(hex) ? size : 0), 0) + atRestart.partial;
      const run1 = s1.blob - s0.blob;
      const run2 = s2.blob - s1.blob;
      const inflight = run1 - probes - (durableAtRestart - before.partial);
      const wholeTarget =
        (r.code === 0 || r.code === 3) && // 3: nothing left to do (the cut came after the update completed)
        current === `amd64-linux-${version}` &&
        running.length === 1 &&
        imageIds[0] === image.configDigest &&
        served === body &&
        bad.length === 0 &&
        integrity === "ok";
      const noRefetch = run2 <= updateSize - durableAtRestart + probes && (FETCH_STATES.has(p.fault) || run2 === 0);
      const bounded = run1 + run2 <= updateSize + Math.max(0, inflight) + 2 * probes && inflight <= INFLIGHT_MAX;
      const outcome = !hit ? "not-tried" : wholeTarget && noRefetch && bounded ? "survived" : "failed";
      tally.record(
        label(p),
        outcome,
        `${hit ? `killed at ${marker!.point}` : `no kill at ${p.fault} (exit ${cut.exitCode ?? cut.signalCode})`}; rerun exit ${r.code}; ` +
          `wire ${run1}+${run2} B for an update of ${updateSize} B (on disk at restart ${durableAtRestart} B, in flight ${inflight} B, trailer probes ${probes} B/run); ` +
          `fioup says ${r.json?.bytesFetched ?? "?"}/${r.json?.bytesTotal ?? "?"} B; current ${current}; ${running.length} container(s); blobs ok: ${bad.length === 0}; db ${integrity}`,
        { point: label(p), hit, survived: outcome === "survived", wireRun1: run1, wireRun2: run2, updateSize, durableAtRestart, inflight, fioupCapped: r.json?.bytesFetched ?? -1 },
      );
      expect(hit, `the kill did not land at ${p.fault}: exit ${cut.exitCode ?? cut.signalCode}\n${cutErr.slice(-800)}`).toBe(true);
      if (saved) {
        expect(saved.state, `the database after the kill at ${p.fault}`).toBe(p.fault.slice("state:".length));
        if (reached(saved.state as UpdateState, "started")) expect(saved.current).toBe(`amd64-linux-${version}`);
        else expect(saved.current).not.toBe(`amd64-linux-${version}`);
      }
      expect(r.code === 0 || r.code === 3, r.stderr).toBe(true);
      expect(current).toBe(`amd64-linux-${version}`);
      expect(running).toHaveLength(1);
      expect(imageIds[0]).toBe(image.configDigest);
      expect(served).toBe(body);
      expect(bad).toEqual([]);
      expect(integrity).toBe("ok");
      expect(updateSize).toBeGreaterThan(BIG);
      // Nothing durable fetched again; once fetched, no layer byte at all.
      expect(run2).toBeLessThanOrEqual(updateSize - durableAtRestart + probes);
      if (!FETCH_STATES.has(p.fault)) expect(run2).toBe(0);
      expect(run1 + run2).toBeLessThanOrEqual(updateSize + Math.max(0, inflight) + 2 * probes);
      expect(inflight).toBeLessThanOrEqual(INFLIGHT_MAX);
    }, 180_000);
  });
});
