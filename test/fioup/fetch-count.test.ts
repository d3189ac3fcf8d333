/**
 * fioup's count of the bytes an update fetched, across a kill: `bytesFetched` is saved every MiB
 * while bytes reach partial files in between, so a SIGKILL leaves partials holding bytes no count
 * has seen. The run that resumes them must count them, or the update reports less than the
 * bytes it brought (every byte of it comes at least once).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { deviceRig, httpdCompose, httpdImage, pushImage, randomBytes, type DeviceRig } from "./_setup.ts";

const MiB = 1 << 20;
let rig: DeviceRig;

beforeAll(async () => {
  rig = await deviceRig({ app: `fetchcount${process.pid}`, repo: "test/fcount", body: "count v1" });
}, 120_000);

afterAll(async () => {
  await rig?.stop();
});

/** Publishes `version`: its app's image has two layers of 24 MiB, which download at once. */
async function publishLarge(version: number): Promise<void> {
  const { upstream, pub, app, port } = rig;
  const web = await pushImage(upstream, "test/fcount", `v${version}`, {
    ...httpdImage(`count v${version}`),
    layers: [{ "/www/index.html": `count v${version}` }, { "/a.bin": randomBytes(24 * MiB) }, { "/b.bin": randomBytes(24 * MiB) }],
  });
  await pub.commit({ [`${app}/docker-compose.yml`]: httpdCompose(web, port) });
  await pub.publish(version);
}

test("a fetch killed while its partial files hold bytes its count has not seen counts them when it resumes: every byte at least once", async () => {
  const { device } = rig;
  // Two large layers download at once, so the count (saved each MiB of both) and the partial files
  // (written in batches of each) drift apart: the kill lands when the partials hold a good part of
  // a MiB more than is counted. A fetch that ends before such a moment comes is tried on a new version.
  let seen = { onDisk: 0, counted: 0 };
  let killed = false;
  for (let version = 2; version <= 4 && !killed; version++) {
    await publishLarge(version);
    killed = await device.killWhen(async () => {
      const onDisk = await device.ingestBytes(); // read first: the count read after it is no smaller than at this moment
      const st = device.updateState();
      if (st?.state !== "fetching" || onDisk < st.bytesFetched + MiB / 4) return false;
      seen = { onDisk, counted: st.bytesFetched };
      return true;
    }, ["fetch"]);
  }
  expect(killed).toBe(true);

  const r = await device.fioup("fetch");
  expect(r.code, r.stderr).toBe(0);
  const why = `killed with ${seen.onDisk} B in partial files and ${seen.counted} B counted; after the resume ${r.json.bytesFetched} B counted of ${r.json.bytesTotal}`;
  // Every byte of the update crossed the wire at least once; bytes received but not yet written
  // at the kill (at most two 1 MiB write batches per download, two downloads) come twice.
  expect(r.json.bytesFetched, why).toBeGreaterThanOrEqual(r.json.bytesTotal);
  expect(r.json.bytesFetched, why).toBeLessThanOrEqual(r.json.bytesTotal + 4 * MiB);

  // Once the update completes, fioup.db keeps none of its records (the fetch's report, its counts).
  const done = await device.fioup("update");
  expect(done.code, done.stderr).toBe(0);
  expect(device.updateState()?.state).toBe("completed");
  expect(device.updateRecords()).toEqual([]);
}, 240_000);

test("fioup cancel of a fetch killed half way leaves none of its records in fioup.db", async () => {
  const { device } = rig;
  let killed = false;
  for (let version = 5; version <= 7 && !killed; version++) {
    await publishLarge(version);
    killed = await device.killWhen(() => {
      const st = device.updateState();
      return st?.state === "fetching" && st.bytesFetched > 2 * MiB; // the large layers are coming
    }, ["fetch"]);
  }
  expect(killed).toBe(true);
  // What the killed fetch kept to resume: how far its count covers the partials, its report.
  expect(device.updateRecords().map((k) => k.split(":")[0]).sort()).toEqual(["fetch-counted-to", "fetch-report"]);

  const r = await device.fioup("cancel");
  expect(r.code, r.stderr).toBe(0);
  expect(device.updateState()?.state).toBe("canceled");
  expect(device.updateRecords()).toEqual([]);
}, 240_000);
