/**
 * fioup under power cuts and bad content, end to end: SIGKILL during fetch,
 * install and start, each time the next run finishing on one whole target
 * without downloading committed bytes again; a blob changed in the registry
 * after publishing is refused; one damaged in the device's store after the
 * fetch is removed and fetched again, not held against the target; a rollback cut short is
 * finished by the next run (the failed target's app not started again: an app's start may run
 * its migrations), not resumed as an update; a targets.json not signed by the right keys is
 * refused.
 */
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { closeSync, existsSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../harness/tmp.ts";
import { generateKey, loadKeyFile } from "../../lib/tuf/keys.ts";
import { signJson } from "../../lib/tuf/metadata.ts";
import {
  Device, Publisher, freePort, httpGet, httpdCompose, httpdImage, pushImage, pushImageDetailed, randomBytes, startDockerRegistry,
  startDockerd, startTestGateway, type DockerRegistryHandle, type DockerdHandle, type TestGateway,
} from "./_setup.ts";

const APP = `fioupkill${process.pid}`;
let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gw: TestGateway;
let device: Device;
let pub: Publisher;
let port: number;

beforeAll(async () => {
  [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startTestGateway()]);
  port = await freePort();
  const web1 = await pushImage(upstream, "test/kweb", "v1", httpdImage("kill v1"));
  pub = await Publisher.create(gw, upstream, { [`${APP}/docker-compose.yml`]: httpdCompose(web1, port) });
  device = await Device.create(dockerd);
  await device.register(gw);
  await pub.publish(1);
  const r = await device.fioup("update");
  if (r.code !== 0) throw new Error(`v1 update failed: ${r.stderr}`);
}, 120_000);

afterAll(async () => {
  await device?.cleanup([APP]).catch(() => {});
  await Promise.all([gw?.stop(), upstream?.stop()]);
  await dockerd?.stop();
});

const killWhen = (when: () => Promise<boolean> | boolean) => device.killWhen(when);

describe("fioup resilience", () => {
  test("SIGKILL during fetch, install and start: the next run finishes v2 without fetching committed bytes again", async () => {
    const web2 = await pushImage(upstream, "test/kweb", "v2", {
      ...httpdImage("kill v2"),
      layers: [{ "/www/index.html": "kill v2" }, { "/big.bin": randomBytes(48 << 20) }],
    });
    await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(web2, port) });
    await pub.publish(2);

    expect(await killWhen(async () => (await device.ingestBytes()) > 4 << 20)).toBe(true);
    expect(device.updateState()?.state).toBe("fetching");
    const partial = await device.ingestBytes();
    expect(partial).toBeGreaterThan(0);

    expect(await killWhen(() => device.updateState()?.state === "installing")).toBe(true);
    // Killed while `compose up` runs: the compose child outlives it until the next run kills it.
    const pidFile = join(device.root, "var/sota/compose-apps/.fioup-compose.pids");
    const composePids = () => {
      try {
        return readFileSync(pidFile, "utf8").split("\n").map((l) => Number(l.split(" ")[0])).filter((p) => p > 0);
      } catch {
        return [];
      }
    };
    expect(await killWhen(() => device.updateState()?.state === "starting" && composePids().length > 0)).toBe(true);
    const orphans = composePids();
    expect(orphans.length).toBeGreaterThan(0);

    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.toTarget).toBe("amd64-linux-2");
    const alive = (pid: number) => {
      try {
        return !readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.startsWith("Z");
      } catch {
        return false;
      }
    };
    expect(orphans.filter(alive)).toEqual([]);
    expect(r.json.state).toBe("completed");
    // Bytes are counted as they arrive, and what a killed run wrote past its last count is counted
    // by the next (fetch-count.test.ts): every byte at least once. Resumed with Range, committed
    // blobs not fetched again: well under the total plus the partial that was kept.
    expect(r.json.bytesFetched).toBeGreaterThanOrEqual(r.json.bytesTotal);
    expect(r.json.bytesFetched).toBeLessThan(r.json.bytesTotal + partial);
    expect(await httpGet(port)).toBe("kill v2");
    const containers = (await dockerd.docker("ps", "-a", "--filter", `label=com.docker.compose.project=${APP}`, "--format", "{{.Image}} {{.State}}")).trim().split("\n");
    expect(containers).toHaveLength(1);
    expect(containers[0]).toContain("running");
  }, 120_000);

  test("a blob changed in the registry after publishing is refused and the old version keeps running", async () => {
    const { ref, image } = await pushImageDetailed(upstream, "test/kweb", "v3", httpdImage("kill v3 tampered"));
    await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(ref, port) });
    await pub.publish(3);
    const layer = image.layers.at(-1)!;
    const file = join(gw.dataDir, "registry/blobs/sha256", layer.digest.slice(7));
    const evil = new Uint8Array(layer.gz);
    evil[evil.length - 20]! ^= 0xff;
    writeFileSync(file, evil);

    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(40);
    expect(r.stderr).toContain(layer.digest);
    expect((await device.blobs()).has(layer.digest)).toBe(false);
    expect(await httpGet(port)).toBe("kill v2");
    const st = await device.fioup("status", "--no-apps");
    expect(st.json.current.name).toBe("amd64-linux-2");
    expect(st.json.last.state).toBe("failed");
  }, 120_000);

  test("a blob damaged in the device's store after the fetch: rolled back, removed, not held against the target; the next update fetches it again", async () => {
    const { ref, image } = await pushImageDetailed(upstream, "test/kweb", "v4", { ...httpdImage("kill v4"), layers: [{ "/www/index.html": "kill v4" }, { "/big.bin": randomBytes(2 << 20) }] });
    await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(ref, port) });
    await pub.publish(4);
    expect((await device.fioup("fetch")).code).toBe(0);
    // The disk rots the big layer in place (a torn write on an SD card that ignores fsync looks the same).
    const layer = image.layers.at(-1)!;
    const stored = join(device.storeDir, "blobs/sha256", layer.digest.slice(7));
    const fd = openSync(stored, "r+");
    writeSync(fd, Buffer.from("CORRUPTCORRUPT"), 0, 14, 1000);
    closeSync(fd);

    const r = await device.fioup("install");
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`Removed 1 damaged blob(s) from the device's store (${layer.digest}): the next run fetches them again`);
    expect(existsSync(stored)).toBe(false);
    expect(await httpGet(port)).toBe("kill v2");
    const st = await device.fioup("status", "--no-apps");
    expect(st.json.badTargets).not.toContain("amd64-linux-4");

    const again = await device.fioup("update");
    expect(again.code, again.stderr).toBe(0);
    expect(again.json.toTarget).toBe("amd64-linux-4");
    expect(await httpGet(port)).toBe("kill v4");
  }, 120_000);

  test("killed as its rollback begins, the next run finishes the rollback: v4 runs, v5 is bad, v5's app is not started again", async () => {
    // The image v4's container runs, as the engine names it (fioup tags what it loads).
    const v4Image = (await dockerd.docker("ps", "--filter", `label=com.docker.compose.project=${APP}`, "--format", "{{.Image}}")).trim();
    expect(v4Image).not.toBe("");
    const bad = await pushImage(upstream, "test/kweb", "v5", { cmd: ["sh", "-c", "echo v5 cannot start; exit 3"], layers: [{ "/www/index.html": "v5" }] });
    await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(bad, port) });
    await pub.publish(5);

    const report = join(await tempDir("rb-cut-"), "fault.jsonl");
    const cut = device.spawn(["update", "--format", "json"], { FIOUP_FAULT: "rolling-back", FIOUP_FAULT_REPORT: report });
    const [, cutErr] = await Promise.all([new Response(cut.stdout).text(), new Response(cut.stderr).text(), cut.exited]);
    expect(cut.signalCode, cutErr).toBe("SIGKILL");
    expect(existsSync(report) && readFileSync(report, "utf8")).toContain('"point":"rolling-back"');
    expect(device.updateState()?.state).toBe("starting");
    const since = (Date.now() / 1000).toFixed(3); // v5's container started within this very second, before the cut

    const r = await device.fioup("update");
    const until = (Date.now() / 1000 + 1).toFixed(3);
    // What the engine started after the cut: v4's app again, never v5's.
    const started = (
      await dockerd.docker("events", "--since", since, "--until", until, "--filter", "type=container", "--filter", "event=start", "--filter", `label=com.docker.compose.project=${APP}`, "--format", "{{.Actor.Attributes.image}}")
    )
      .trim()
      .split("\n")
      .filter(Boolean);
    expect(started.length).toBeGreaterThan(0);
    expect(started.filter((image) => image !== v4Image)).toEqual([]);
    expect(r.code, r.stderr).toBe(51); // the start failed, as the cut run would have said
    expect(r.stderr).toContain("Finishing the interrupted rollback of the update to amd64-linux-5");
    expect(await httpGet(port)).toBe("kill v4");
    const st = await device.fioup("status");
    expect(st.json.current.name).toBe("amd64-linux-4");
    expect(st.json.badTargets).toContain("amd64-linux-5");
    expect((await device.fioup("update")).code).toBe(3); // v5 is bad: not tried again
  }, 120_000);

  test("a targets.json not signed by the targets key is refused, even with valid snapshot and timestamp", async () => {
    const web6 = await pushImage(upstream, "test/kweb", "v6", httpdImage("kill v6"));
    await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(web6, port) });
    await pub.publish(6);
    // An attacker with the online keys (snapshot, timestamp) but not the targets key: a new
    // targets.json signed by some other key, pinned by a correctly signed snapshot and timestamp.
    const db = new Database(join(gw.dataDir, "gateway.db"));
    const latest = (role: string) =>
      db.query<{ version: number; json: string; expires: string }, [string]>(
        "SELECT version, json, expires FROM tuf_metadata WHERE role = ? ORDER BY version DESC LIMIT 1",
      ).get(role)!;
    const put = (role: string, version: number, bytes: Uint8Array, expires: string) =>
      db.query("INSERT INTO tuf_metadata (role, version, json, expires) VALUES (?, ?, ?, ?)").run(role, version, new TextDecoder().decode(bytes), expires);
    const meta = (bytes: Uint8Array, version: number) => ({ version, length: bytes.length, hashes: { sha256: createHash("sha256").update(bytes).digest("hex") } });
    const t = latest("targets");
    const targets = JSON.parse(t.json).signed;
    const name = Object.keys(targets.targets).find((n) => targets.targets[n].custom.version === "6")!;
    targets.targets["amd64-linux-99"] = { ...targets.targets[name], custom: { ...targets.targets[name].custom, version: "99" } };
    targets.version = t.version + 1;
    const evilTargets = signJson(targets, [generateKey()]);
    put("targets", targets.version, evilTargets, t.expires);
    const sn = latest("snapshot");
    const snapshot = JSON.parse(sn.json).signed;
    snapshot.version = sn.version + 1;
    snapshot.meta["targets.json"] = meta(evilTargets, targets.version);
    const snapBytes = signJson(snapshot, [await loadKeyFile(join(gw.dataDir, "tuf/keys/snapshot.json"))]);
    put("snapshot", snapshot.version, snapBytes, sn.expires);
    const ts = latest("timestamp");
    const timestamp = JSON.parse(ts.json).signed;
    timestamp.version = ts.version + 1;
    timestamp.meta["snapshot.json"] = meta(snapBytes, snapshot.version);
    put("timestamp", timestamp.version, signJson(timestamp, [await loadKeyFile(join(gw.dataDir, "tuf/keys/timestamp.json"))]), ts.expires);
    db.close();

    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(30);
    expect(r.stderr).toContain("targets.json: not signed by the trusted keys");
    expect(await httpGet(port)).toBe("kill v4");
  }, 120_000);
});
