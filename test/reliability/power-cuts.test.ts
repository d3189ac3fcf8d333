/**
 * Power cuts: the real fioup (`bun fioup/main.ts update`, or $FIOUP_BIN) is
 * SIGKILLed at points spread over fetch, install, start and complete, each
 * against a freshly published target. After every cut the next `fioup update`
 * ends on one whole target: status names it, exactly one container of the app
 * runs and it is that target's image, every committed blob still matches its
 * digest, fioup.db passes integrity_check, and no byte is fetched twice.
 * Default: 5 points; RELIABILITY_FULL=1: 52.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  Device, Publisher, freePort, httpGet, httpdCompose, httpdImage, pushImageDetailed, randomBytes, startDockerRegistry,
  startDockerd, startTestGateway, type DockerRegistryHandle, type DockerdHandle, type TestGateway,
} from "../fioup/_setup.ts";
import { FULL, Tally } from "./_tally.ts";

const tally = new Tally("power-cut");
const APP = `relcut${process.pid}`;
const STATES = ["fetching", "fetched", "installing", "installed", "starting", "started", "completing"] as const;
type Point = { state: (typeof STATES)[number]; delayMs: number };

/** How long each state lasts, roughly (ms): a cut later than that would miss it. */
const WINDOW: Record<Point["state"], number> = { fetching: 300, fetched: 150, installing: 400, installed: 250, starting: 400, started: 40, completing: 15 };
/** Default: one point in each phase. Full: every state, with random delays within the state's window. */
const POINTS: Point[] = FULL
  ? Array.from({ length: 52 }, (_, i) => {
      const state = STATES[i % STATES.length]!;
      return { state, delayMs: Math.floor(Math.random() * WINDOW[state]) };
    })
  : [
      { state: "fetching", delayMs: 150 },
      { state: "installing", delayMs: 0 },
      { state: "starting", delayMs: 0 },
      { state: "starting", delayMs: 400 },
      { state: "completing", delayMs: 0 },
    ];

let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gw: TestGateway;
let device: Device;
let pub: Publisher;
let port: number;
let survived = 0;
let landed = 0;

beforeAll(async () => {
  [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startTestGateway()]);
  port = await freePort();
  const { ref } = await pushImageDetailed(upstream, `rel/cut${process.pid}`, "v1", httpdImage("cut v1"));
  pub = await Publisher.create(gw, upstream, { [`${APP}/docker-compose.yml`]: httpdCompose(ref, port) });
  device = await Device.create(dockerd);
  await device.register(gw);
  await pub.publish(1);
  const r = await device.fioup("update");
  if (r.code !== 0) throw new Error(`v1 update failed: ${r.stderr}`);
}, 180_000);

afterAll(async () => {
  process.stderr.write(`[power-cut] points tried ${POINTS.length}, cut landed ${landed}, survived ${survived}\n`);
  tally.print();
  await device?.cleanup([APP]).catch(() => {});
  await Promise.all([gw?.stop(), upstream?.stop()]);
  await dockerd?.stop();
});

/** The newest update row of the device DB (read-only: safe while fioup runs). */
function lastUpdate(): { id: string; state: string } | undefined {
  const db = new Database(join(device.sotaDir, "fioup.db"), { readonly: true });
  try {
    return db.query<{ id: string; state: string }, []>("SELECT id, state FROM updates ORDER BY id DESC LIMIT 1").get() ?? undefined;
  } catch {
    return undefined;
  } finally {
    db.close();
  }
}

/** Starts `fioup update`, SIGKILLs it `delayMs` after its new update's saved state reaches `state`. */
async function cutAt(p: Point): Promise<{ killed: boolean; seen: string }> {
  const prev = lastUpdate()?.id;
  const proc = device.spawn(["update"]);
  void new Response(proc.stdout).text();
  void new Response(proc.stderr).text();
  let exited = false;
  void proc.exited.then(() => (exited = true));
  const want = STATES.indexOf(p.state);
  const deadline = Date.now() + 90_000;
  let seen = "none";
  while (!exited && Date.now() < deadline) {
    const u = lastUpdate();
    const st = u && u.id !== prev ? u.state : "none";
    seen = st;
    const i = STATES.indexOf(st as never);
    if (i >= want || st === "completed") {
      if (p.delayMs) await Bun.sleep(p.delayMs);
      if (exited) break;
      seen = lastUpdate()?.state ?? st;
      proc.kill("SIGKILL");
      await proc.exited;
      return { killed: true, seen };
    }
    await Bun.sleep(3);
  }
  proc.kill("SIGKILL");
  await proc.exited;
  return { killed: false, seen };
}

/** Every committed blob still hashes to its name. */
function corruptBlobs(): string[] {
  const dir = join(device.storeDir, "blobs/sha256");
  const bad: string[] = [];
  for (const f of readdirSync(dir)) {
    const h = new Bun.CryptoHasher("sha256").update(readFileSync(join(dir, f))).digest("hex");
    if (h !== f) bad.push(f);
  }
  return bad;
}

function dbIntegrity(): string {
  const db = new Database(join(device.sotaDir, "fioup.db"), { readonly: true });
  try {
    return db.query<{ integrity_check: string }, []>("PRAGMA integrity_check").get()!.integrity_check;
  } finally {
    db.close();
  }
}

describe("fioup killed with SIGKILL mid-update", () => {
  POINTS.forEach((p, i) => {
    const version = i + 2;
    test(`cut ${i + 1}/${POINTS.length}: at "${p.state}" + ${p.delayMs} ms, the next run ends on target ${version}`, async () => {
      const body = `cut v${version}`;
      const { ref, image } = await pushImageDetailed(upstream, `rel/cut${process.pid}`, `v${version}`, {
        ...httpdImage(body),
        layers: [{ "/www/index.html": body }, { "/big.bin": randomBytes(6 << 20) }],
      });
      await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(ref, port) });
      await pub.publish(version);

      const t0 = performance.now();
      const cut = await cutAt(p);
      const t1 = performance.now();
      const r = await device.fioup("update");
      const t2 = performance.now();
      const st = await device.fioup("status", "--no-apps");
      const current = st.json?.current?.name;
      const running = (await dockerd.docker("ps", "--filter", `label=com.docker.compose.project=${APP}`, "--format", "{{.ID}}")).trim().split("\n").filter(Boolean);
      const imageIds = await Promise.all(running.map(async (id) => (await dockerd.docker("inspect", "--format", "{{.Image}}", id)).trim()));
      const served = await httpGet(port);
      const bad = corruptBlobs();
      const integrity = dbIntegrity();
      const fetchedOnce = r.code !== 0 || r.json.bytesFetched <= r.json.bytesTotal;
      const ok =
        (r.code === 0 || r.code === 3) && // 3: nothing left to do (the cut came after the update completed)
        current === `amd64-linux-${version}` &&
        running.length === 1 &&
        imageIds[0] === image.configDigest &&
        served === body &&
        bad.length === 0 &&
        integrity === "ok" &&
        fetchedOnce;
      if (ok) survived++;
      if (cut.killed) landed++;
      tally.record(
        `SIGKILL at ${p.state} + ${p.delayMs} ms`,
        ok ? "survived" : "failed",
        `${cut.killed ? `killed while ${cut.seen}` : "finished before the cut"}; rerun exit ${r.code}` +
          (r.code === 0 ? `, fetched ${r.json.bytesFetched}/${r.json.bytesTotal} B` : "") +
          `; ${Math.round(t1 - t0)}+${Math.round(t2 - t1)} ms; current ${current}; ${running.length} container(s); blobs ok: ${bad.length === 0}; db ${integrity}`,
      );
      expect(r.code === 0 || r.code === 3, r.stderr).toBe(true);
      expect(current).toBe(`amd64-linux-${version}`);
      expect(running).toHaveLength(1);
      expect(imageIds[0]).toBe(image.configDigest);
      expect(served).toBe(body);
      expect(bad).toEqual([]);
      expect(integrity).toBe("ok");
      if (r.code === 0) expect(r.json.bytesFetched).toBeLessThanOrEqual(r.json.bytesTotal);
    }, 120_000);
  });
});
