/**
 * A stalled download is not silent: real fioup fetching through a fault proxy that stalls the
 * layer's connection mid-blob, and then the next three connections too (about 5 s without data),
 * says the stall in its log when it is detected (retrySayer's line, at most one in 10 s after it),
 * and `fioup status` shows the retrying download (blob, why, no data since when) while it lasts,
 * and nothing once bytes flow again.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { httpdCompose, httpdImage, pushImageDetailed, randomBytes, startProxiedDevice, type ProxiedDevice } from "./_setup.ts";

const APP = `stall${process.pid}`;
const REPO = `stall/web${process.pid}`;
const MiB = 1 << 20;
let rig: ProxiedDevice;

beforeAll(async () => {
  // A stall is noticed after 1 s (the default is 15 s).
  rig = await startProxiedDevice({ app: APP, repo: REPO, body: "stall v1", config: "[fioup]\ndownload_stall_seconds = 1\n" });
  const r = await rig.device.fioup("update");
  if (r.code !== 0) throw new Error(`v1 update failed: ${r.stderr}`);
}, 180_000);

afterAll(() => rig?.stop());

/**
 * Publishes `version` with a 12 MiB layer, makes that layer's download stall mid-way and its next
 * three tries stall at their first byte (1 s each, then backoff), and starts `fioup update`
 * reading its stderr; resolves once `seen` matches it (or the run ended, or 60 s passed).
 */
async function stallingUpdate(version: number, seen: (layer: string) => RegExp) {
  const { upstream, pub, proxy, device, port } = rig;
  const { ref, image } = await pushImageDetailed(upstream, REPO, `v${version}`, { ...httpdImage(`stall v${version}`), layers: [{ "/www/index.html": `stall v${version}` }, { "/big.bin": randomBytes(12 * MiB) }] });
  await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(ref, port) });
  await pub.publish(version);
  const layer = image.layers.at(-1)!.digest;
  proxy.inject({ kind: "stall", afterBytes: 4 * MiB, stallMs: 20_000 }, ...Array.from({ length: 3 }, () => ({ kind: "stall" as const, afterBytes: 0, stallMs: 20_000 })));
  const p = device.spawn(["update"]);
  const run = { p, layer, stderr: "", reading: Promise.resolve() };
  run.reading = (async () => {
    for await (const chunk of p.stderr) run.stderr += new TextDecoder().decode(chunk);
  })();
  const line = seen(layer);
  for (const t0 = Date.now(); !line.test(run.stderr) && Date.now() - t0 < 60_000 && p.exitCode === null; ) await Bun.sleep(50);
  return run;
}

test("a stall mid-layer is logged when detected and shown by fioup status while the retries last", async () => {
  const { device } = rig;
  const stallLine = (layer: string) =>
    new RegExp(`^retrying layer ${layer.slice(7, 19)}: Cannot fetch blob ${layer} from \\S+/${REPO}: no data for 1 s after \\d+ of \\d+ bytes \\(1 s so far without data; giving up after 60 s\\)$`, "m");
  const run = await stallingUpdate(2, stallLine);
  const { p, layer } = run;
  expect(run.stderr).toMatch(stallLine(layer));

  // The retries stall too: the byte count is frozen, and status says why.
  const status = (await device.fioup("status", "--no-apps")).json;
  expect(status.pending.state).toBe("fetching");
  expect(status.fetchStall.blob).toBe(layer);
  expect(status.fetchStall.retrying).toMatch(/^Cannot fetch blob \S+ from \S+: no data for 1 s after \d+ of \d+ bytes$/);
  const since = Date.parse(status.fetchStall.noDataSince);
  expect(Date.now() - since).toBeGreaterThan(1_000);
  expect(Date.now() - since).toBeLessThan(10_000);

  expect(await p.exited).toBe(0);
  await run.reading;
  // The retries of that one stall came within 10 s of its first line: said once. A line may
  // follow for a later stall (a retry that brought bytes before the next queued stall caught it,
  // when another connection took a stall first), but each line is a stall's first (1 s without
  // data): saying every retry would show the same stall again at 2 s, 3 s, 5 s.
  const said = run.stderr.match(/^retrying layer .*$/gm) ?? [];
  expect(said.length).toBeGreaterThanOrEqual(1);
  for (const line of said) expect(line).toMatch(/ \(1 s so far without data; /);
  expect((await device.fioup("status", "--no-apps")).json.fetchStall).toBeNull();
}, 120_000);

test("a fetch killed while it retries: fioup status no longer says a download is retrying (nothing is), and the next run finishes", async () => {
  const { device } = rig;
  // As above; the stalls the killed run leaves queued cost the next run a few seconds, as they did the first.
  const { p, layer, reading } = await stallingUpdate(3, () => /^retrying layer /m);
  expect((await device.fioup("status", "--no-apps")).json.fetchStall?.blob).toBe(layer);

  // The process is killed (a power cut of fioup alone, an OOM kill, `kill -9`).
  p.kill("SIGKILL");
  await p.exited;
  await reading;
  const status = (await device.fioup("status", "--no-apps")).json;
  expect(status.pending.state).toBe("fetching");
  // Before: the last retry's note, frozen, as if a download were still retrying.
  expect(status.fetchStall).toBeNull();

  const again = await device.fioup("update");
  expect(again.code, again.stderr).toBe(0);
  expect((await device.fioup("status", "--no-apps")).json.current.version).toBe("3");
}, 120_000);

test("an app folder that ships a large file: its bundle's download is said in the init step, before the image blobs", async () => {
  const { upstream, pub, device, port } = rig;
  const ref = await pushImageDetailed(upstream, REPO, "v4", httpdImage("stall v4")).then((r) => r.ref);
  // Incompressible, so the bundle (a .tgz) is 2 MiB as well.
  await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(ref, port), [`${APP}/data.txt`]: Buffer.from(randomBytes(2 * MiB)).toString("base64") });
  await pub.publish(4);
  const r = await device.fioup("update");
  expect(r.code, r.stderr).toBe(0);
  // In a log: one line once it is stored (before: nothing between "init" and the fetch step).
  const lines = r.stderr.split("\n");
  const bundle = lines.findIndex((l) => new RegExp(`^\\[\\d+\\.\\ds\\] app ${APP}: bundle fetched, 2\\.\\d MiB \\(\\d+ bytes\\)$`).test(l));
  expect(bundle, r.stderr).toBeGreaterThan(lines.findIndex((l) => /\] init /.test(l)));
  expect(bundle).toBeLessThan(lines.findIndex((l) => /\] fetch /.test(l)));
  expect(lines.filter((l) => l.includes(`app ${APP}: bundle fetched`))).toHaveLength(1);
}, 120_000);
