/**
 * A rollback cut short is finished, not taken for an update to resume. v2's container exits at
 * once, so its start fails and fioup rolls back to v1; fioup is killed (SIGKILL, as a power cut or
 * a stop that outlasts systemd's timeout) the moment the rollback is saved, before it restores
 * anything. The next run must put v1 back, mark v2 bad and say the start failed, without starting
 * v2's app again (an app's start may run its migrations): it once resumed the update, whose start
 * step ran v2 again. Real fioup, gateway, registry, dockerd and docker compose.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "../harness/tmp.ts";
import {
  Device, Publisher, ROOT, freePort, httpGet, httpdCompose, httpdImage, pushImage, startDockerRegistry, startDockerd, startTestGateway,
  type DockerRegistryHandle, type DockerdHandle, type TestGateway,
} from "./_setup.ts";

const APP = `rbcut${process.pid}`;
let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gw: TestGateway;
let device: Device;
let pub: Publisher;
let port: number;

beforeAll(async () => {
  [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startTestGateway()]);
  port = await freePort();
  const web1 = await pushImage(upstream, "test/rbweb", "v1", httpdImage("rollback v1"));
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

test("killed as its rollback begins, the next run finishes the rollback: v1 runs, v2 is bad, v2's app is not started again", async () => {
  // The image v1's container runs, as the engine names it (fioup tags what it loads).
  const v1Image = (await dockerd.docker("ps", "--filter", `label=com.docker.compose.project=${APP}`, "--format", "{{.Image}}")).trim();
  expect(v1Image).not.toBe("");
  const bad = await pushImage(upstream, "test/rbweb", "v2", { cmd: ["sh", "-c", "echo v2 cannot start; exit 3"], layers: [{ "/www/index.html": "v2" }] });
  await pub.commit({ [`${APP}/docker-compose.yml`]: httpdCompose(bad, port) });
  await pub.publish(2);

  const report = join(await tempDir("rb-cut-"), "fault.jsonl");
  const fioup = process.env.FIOUP_BIN ? [process.env.FIOUP_BIN] : [process.execPath, join(ROOT, "fioup/main.ts")];
  const cut = Bun.spawn([...fioup, "update", "--format", "json"], {
    env: { ...process.env, ...device.env(), FIOUP_FAULT: "rolling-back", FIOUP_FAULT_REPORT: report },
    stdout: "pipe",
    stderr: "pipe",
    cwd: ROOT,
  });
  const [, cutErr] = await Promise.all([new Response(cut.stdout).text(), new Response(cut.stderr).text(), cut.exited]);
  expect(cut.signalCode, cutErr).toBe("SIGKILL");
  expect(existsSync(report) && readFileSync(report, "utf8")).toContain('"point":"rolling-back"');
  expect(device.updateState()?.state).toBe("starting");
  const since = (Date.now() / 1000).toFixed(3); // v2's container started within this very second, before the cut

  const r = await device.fioup("update");
  const until = (Date.now() / 1000 + 1).toFixed(3);
  // What the engine started after the cut: v1's app again, never v2's.
  const started = (
    await dockerd.docker("events", "--since", since, "--until", until, "--filter", "type=container", "--filter", "event=start", "--filter", `label=com.docker.compose.project=${APP}`, "--format", "{{.Actor.Attributes.image}}")
  )
    .trim()
    .split("\n")
    .filter(Boolean);
  expect(started.length).toBeGreaterThan(0);
  expect(started.filter((image) => image !== v1Image)).toEqual([]);
  expect(r.code, r.stderr).toBe(51); // the start failed, as the cut run would have said
  expect(r.stderr).toContain("Finishing the interrupted rollback of the update to amd64-linux-2");
  expect(await httpGet(port)).toBe("rollback v1");
  const st = await device.fioup("status");
  expect(st.json.current.name).toBe("amd64-linux-1");
  expect(st.json.badTargets).toEqual(["amd64-linux-2"]);

  // Said once: v2 is bad, not tried again.
  expect((await device.fioup("update")).code).toBe(3);
}, 180_000);
