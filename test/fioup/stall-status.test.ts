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

test("a stall mid-layer is logged when detected and shown by fioup status while the retries last", async () => {
  const { upstream, pub, proxy, device, port } = rig;
  const { ref, image } = await pushImageDetailed(upstream, REPO, "v2", { ...httpdImage("stall v2"), layers: [{ "/www/index.html": "stall v2" }, { "/big.bin": randomBytes(12 * MiB) }] });
  await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(ref, port) });
  await pub.publish(2);
  const layer = image.layers.at(-1)!.digest;

  // Each retry's connection stalls too (at its first byte from the gateway): 1 s each, then backoff.
  proxy.inject({ kind: "stall", afterBytes: 4 * MiB, stallMs: 20_000 }, ...Array.from({ length: 3 }, () => ({ kind: "stall" as const, afterBytes: 0, stallMs: 20_000 })));
  const p = device.spawn(["update"]);
  let stderr = "";
  const reading = (async () => {
    for await (const chunk of p.stderr) stderr += new TextDecoder().decode(chunk);
  })();
  const stallLine = new RegExp(`^retrying layer ${layer.slice(7, 19)}: Cannot fetch blob ${layer} from \\S+/${REPO}: no data for 1 s after \\d+ of \\d+ bytes \\(1 s so far without data; giving up after 60 s\\)$`, "m");
  for (const t0 = Date.now(); !stallLine.test(stderr) && Date.now() - t0 < 60_000 && p.exitCode === null; ) await Bun.sleep(50);
  expect(stderr).toMatch(stallLine);

  // The retries stall too: the byte count is frozen, and status says why.
  const status = (await device.fioup("status", "--no-apps")).json;
  expect(status.pending.state).toBe("fetching");
  expect(status.fetchStall.blob).toBe(layer);
  expect(status.fetchStall.retrying).toMatch(/^Cannot fetch blob \S+ from \S+: no data for 1 s after \d+ of \d+ bytes$/);
  const since = Date.parse(status.fetchStall.noDataSince);
  expect(Date.now() - since).toBeGreaterThan(1_000);
  expect(Date.now() - since).toBeLessThan(10_000);

  expect(await p.exited).toBe(0);
  await reading;
  // The retries of that one stall came within 10 s of its first line: said once.
  expect(stderr.match(/^retrying layer /gm)).toHaveLength(1);
  expect((await device.fioup("status", "--no-apps")).json.fetchStall).toBeNull();
}, 120_000);
