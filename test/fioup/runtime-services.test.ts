/**
 * Which containers make an app's state: a service scaled to nothing (`scale: 0`,
 * `deploy.replicas: 0`) has none on purpose and is not waited for, and the container a
 * `compose run` of one of its services left behind is no replica of it: one that exited
 * non-zero does not make the app unhealthy.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { projectName } from "../../fioup/runtime/compose.ts";
import {
  Device, Publisher, freePort, httpGet, httpdCompose, httpdImage, pushImage, startDockerRegistry, startDockerd, startTestGateway,
  type DockerRegistryHandle, type DockerdHandle, type TestGateway,
} from "./_setup.ts";

const APP = `rtsvc${process.pid}`;
let dockerd: DockerdHandle;
let upstream: DockerRegistryHandle;
let gw: TestGateway;
let device: Device;
let port: number;

/** Two services of `image` no container is created for: one `scale: 0`, one `deploy.replicas: 0`. */
const scaledToZero = (image: string) =>
  `  spare:\n    image: ${image}\n    command: ["sleep", "3600"]\n    scale: 0\n  standby:\n    image: ${image}\n    command: ["sleep", "3600"]\n    deploy:\n      replicas: 0\n`;

beforeAll(async () => {
  [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startTestGateway()]);
  port = await freePort();
  const web = await pushImage(upstream, "test/rtweb", "v1", httpdImage("services v1"));
  const pub = await Publisher.create(gw, upstream, { [`${APP}/docker-compose.yml`]: httpdCompose(web, port, scaledToZero(web)) });
  device = await Device.create(dockerd);
  await device.register(gw);
  await pub.publish(1);
}, 120_000);

afterAll(async () => {
  await device?.cleanup([APP]).catch(() => {});
  await Promise.all([gw?.stop(), upstream?.stop()]);
  await dockerd?.stop();
});

describe("the services of an app's state", () => {
  test("an app with services scaled to 0 starts and is healthy: they are not waited for", async () => {
    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.state).toBe("completed");
    expect(await httpGet(port)).toBe("services v1");
    const st = await device.fioup("status");
    expect(st.json.current.name).toBe("amd64-linux-1");
    expect(st.json.apps[APP].state).toBe("healthy");
    expect(st.json.apps[APP].services.map((x: { name: string }) => x.name)).toEqual(["web"]);
  }, 180_000);

  test("a one-off `docker-compose run` of a service that exited 1 leaves the app healthy", async () => {
    const dir = join(device.root, "var/sota/compose-apps", APP);
    const run = Bun.spawn(
      ["docker-compose", "-p", projectName(APP), "-f", "docker-compose.yml", "-f", ".fioup/images.yml", "run", "--no-deps", "-T", "web", "sh", "-c", "exit 1"],
      { cwd: dir, env: { ...process.env, ...dockerd.env }, stdout: "pipe", stderr: "pipe" },
    );
    expect(await run.exited, await new Response(run.stderr).text()).toBe(1);
    // The one-off container is still there, exited 1, labelled as the app's.
    const left = await dockerd.docker("ps", "-a", "--filter", `label=com.docker.compose.project=${projectName(APP)}`, "--filter", "label=com.docker.compose.oneoff=True", "--format", "{{.Status}}");
    expect(left).toContain("Exited (1)");

    const st = await device.fioup("status");
    expect(st.json.apps[APP].state).toBe("healthy");
    expect(st.json.apps[APP].services).toEqual([expect.objectContaining({ name: "web", state: "running" })]);
    expect(await httpGet(port)).toBe("services v1");
  }, 120_000);
});
