/**
 * An update touches only what changed: with a web app that bind-mounts files
 * from its own directory and has a healthcheck, changing only a one-shot app
 * leaves the web app serving throughout (polled every 100 ms), its container
 * and its directory untouched; publishing the same content again changes
 * nothing on the device.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { statSync } from "node:fs";
import { join } from "node:path";
import {
  Device, Publisher, freePort, httpdImage, pushImage, startDockerRegistry, startDockerd, startTestGateway,
  type DockerRegistryHandle, type DockerdHandle, type TestGateway,
} from "./_setup.ts";

const WEB = `touchweb${process.pid}`;
const JOB = `touchjob${process.pid}`;
let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gw: TestGateway;
let device: Device;
let pub: Publisher;
let port: number;
let busybox: string;
let uuid: string;

const webCompose = (image: string, port: number) => `services:
  web:
    image: ${image}
    stop_grace_period: 1s
    ports:
      - "127.0.0.1:${port}:80"
    volumes:
      - ./www:/www:ro
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"]
      interval: 1s
      timeout: 1s
      retries: 2
`;
const jobCompose = (image: string, word: string) => `services:
  once:
    image: ${image}
    command: ["echo", "${word}"]
`;

/** Container id and start time of each container of `project`. */
async function containers(project: string): Promise<string[]> {
  const out = await dockerd.docker("ps", "-a", "--filter", `label=com.docker.compose.project=${project}`, "--format", "{{.ID}}");
  const ids = out.trim().split("\n").filter(Boolean).sort();
  return await Promise.all(ids.map(async (id) => `${id} ${(await dockerd.docker("inspect", "-f", "{{.State.StartedAt}}", id)).trim()}`));
}

/** Polls the web app every 100 ms until stopped; collects every answer that is not 200 "served". */
function pollWeb(port: number) {
  const bad: string[] = [];
  let polls = 0;
  let running = true;
  const done = (async () => {
    while (running) {
      polls++;
      try {
        const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) });
        const body = await res.text();
        if (res.status !== 200 || body !== "served from the app dir") bad.push(`${res.status} ${body.slice(0, 60)}`);
      } catch (e) {
        bad.push((e as Error).message);
      }
      await Bun.sleep(100);
    }
  })();
  return {
    async stop() {
      running = false;
      await done;
      return { bad, polls };
    },
  };
}

beforeAll(async () => {
  [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startTestGateway()]);
  port = await freePort();
  // No STOPSIGNAL: busybox httpd as PID 1 ignores SIGTERM, so a stop waits out the grace period.
  busybox = await pushImage(upstream, `touch/web${process.pid}`, "v1", { ...httpdImage("baked into the image"), stopSignal: null });
  pub = await Publisher.create(gw, upstream, {
    [`${WEB}/docker-compose.yml`]: webCompose(busybox!, port),
    [`${WEB}/www/index.html`]: "served from the app dir",
    [`${JOB}/docker-compose.yml`]: jobCompose(busybox!, "one"),
  });
  device = await Device.create(dockerd);
  uuid = await device.register(gw);
  await pub.publish(1);
  const r = await device.fioup("update");
  if (r.code !== 0) throw new Error(`v1 update failed: ${r.stderr}`);
}, 180_000);

afterAll(async () => {
  await device?.cleanup([WEB, JOB]).catch(() => {});
  await Promise.all([gw?.stop(), upstream?.stop()]);
  await dockerd?.stop();
});

describe("an update touches only what changed", () => {
  test("changing only the one-shot app: the web app serves throughout, same container, same directory", async () => {
    const webDir = join(device.root, "var/sota/compose-apps", WEB);
    const before = { web: await containers(WEB), job: await containers(JOB), ino: statSync(webDir).ino };
    expect(before.web).toHaveLength(1);
    await pub.commit({ [`${JOB}/docker-compose.yml`]: jobCompose(busybox, "two") });
    await pub.publish(2);

    const poll = pollWeb(port);
    const r = await device.fioup("update");
    await Bun.sleep(300);
    const { bad, polls } = await poll.stop();
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.toTarget).toBe("amd64-linux-2");
    expect(polls).toBeGreaterThan(5);
    expect(bad).toEqual([]);
    expect(await containers(WEB)).toEqual(before.web);
    expect(statSync(webDir).ino).toBe(before.ino);
    // The changed app did run again, with its new command.
    const job = await containers(JOB);
    expect(job).not.toEqual(before.job);
    const logs = await dockerd.docker("logs", job[0]!.split(" ")[0]!);
    expect(logs.trim()).toBe("two");
  }, 120_000);

  test("publishing the same content again changes nothing on the device", async () => {
    const before = { web: await containers(WEB), job: await containers(JOB) };
    await pub.publish(3);
    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.toTarget).toBe("amd64-linux-3");
    expect(await containers(WEB)).toEqual(before.web);
    expect(await containers(JOB)).toEqual(before.job);
    const st = await device.fioup("status");
    expect(st.json.current.name).toBe("amd64-linux-3");
    expect(st.json.apps[WEB].state).toBe("healthy");
  }, 120_000);

  test("an app that ignores SIGTERM stops within its 1 s grace period; the event names the service that held the stop up", async () => {
    await pub.commit({ [`${WEB}/www/index.html`]: "the second page" });
    await pub.publish(4);
    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(0);
    const res = await fetch(`http://127.0.0.1:${port}/`);
    expect(await res.text()).toBe("the second page");
    type Ev = { eventType: { id: string }; event: { details?: string } };
    const { updates } = await gw.admin<{ updates: { targetName: string; events: Ev[] }[] }>(`/admin/devices/${uuid}/updates`);
    const applied = updates.find((u) => u.targetName === "amd64-linux-4")?.events.find((e) => e.eventType.id === "EcuInstallationApplied");
    const details = JSON.parse(applied?.event.details ?? "{}") as { changed: string[]; stopped: string[] };
    expect(details.changed).toEqual([WEB]);
    expect(details.stopped).toHaveLength(1);
    expect(details.stopped[0]).toMatch(new RegExp(`^${WEB}: stopped in \\d+ ms, held up by service "web" \\(\\d+ ms, killed after its 1 s grace period`));
    const ms = Number(/stopped in (\d+) ms/.exec(details.stopped[0]!)![1]);
    expect(ms).toBeGreaterThanOrEqual(900);
    expect(ms).toBeLessThan(3000); // not Docker's 10 s default
  }, 120_000);
});
