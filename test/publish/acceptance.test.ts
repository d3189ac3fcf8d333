/**
 * A containers repo written the way a new user writes it (test/fixtures/containers/three-apps:
 * `compose.yaml`, `${VAR:-default}` and `.env` interpolation, a healthchecked web app serving
 * files bind-mounted from its own directory, a service built from a subdirectory, a sidecar on a
 * base image that exists only in the local engine, a one-shot service) publishes with no flags
 * beyond where and what, and a device runs it: real gateway, real dockerd, real fioup.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { cp } from "node:fs/promises";
import { join } from "node:path";
import { busyboxImageTar } from "../harness/images.ts";
import { asTestGateway, collectCli, Device, freePort, httpGet, ROOT, startDockerd, type CliResult, type DockerdHandle, type TestGateway } from "../fioup/_setup.ts";
import { startGateway, type GatewayHandle } from "./_gateway.ts";
import { fetchApp, gatewayRegistry, signedTargets } from "./_inspect.ts";
import { FIXTURES, git } from "./_setup.ts";
import { tempDir } from "../harness/tmp.ts";

const APPS = ["db-migrate", "orders", "static-site"];
let dockerd: DockerdHandle;
let handle: GatewayHandle;
let gw: TestGateway;
let device: Device;
let repo: string;
let webPort: number;
let apiPort: number;
let published: CliResult;

/** `gateway publish` as CI runs it: where and what, nothing else; variables from `env`. */
async function publishCli(env: Record<string, string>, dir = repo): Promise<CliResult> {
  const p = Bun.spawn(
    [process.execPath, join(ROOT, "gateway/main.ts"), "publish", "--containers", dir, "--ref", "refs/heads/master", "--server", gw.url, "--token", gw.adminToken, "--format", "json"],
    { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...dockerd.env, ...env } },
  );
  return await collectCli(p, "gateway publish");
}

/** A copy of the repo with one file edited and committed: its path. */
async function editedCopy(file: string, from: string, to: string): Promise<string> {
  const dir = await tempDir("three-apps-edited-");
  await cp(repo, dir, { recursive: true });
  await Bun.write(join(dir, file), (await Bun.file(join(repo, file)).text()).replace(from, to));
  await git(dir, "commit", "-qam", `edit ${file}`);
  return dir;
}

async function containerOf(project: string, service: string): Promise<string> {
  return (await dockerd.docker("ps", "-aq", "--filter", `label=com.docker.compose.project=${project}`, "--filter", `label=com.docker.compose.service=${service}`)).trim();
}

beforeAll(async () => {
  [dockerd, handle] = await Promise.all([startDockerd(), startGateway({ args: ["--polling-seconds", "1"] })]);
  gw = asTestGateway(handle);
  // In no registry anywhere: publish must take it from the engine.
  await dockerd.docker("load", "-i", await busyboxImageTar({ tag: "local/busybox:1" }));
  repo = await tempDir("three-apps-");
  await cp(join(FIXTURES, "three-apps"), repo, { recursive: true });
  await git(repo, "init", "-q", "-b", "master");
  await git(repo, "add", "-A");
  await git(repo, "commit", "-q", "-m", "three apps");
  [webPort, apiPort] = [await freePort(), await freePort()];
  device = await Device.create(dockerd);
  const reg = await device.fioup("register", "--server", gw.url, "--token", gw.adminToken, "--hwid", "x86_64-linux", "--name", "three-apps-device");
  if (reg.code !== 0) throw new Error(`register failed (${reg.code}): ${reg.stderr}`);
  published = await publishCli({ WEB_PORT: String(webPort), API_PORT: String(apiPort), GREETING: "the fleet" });
}, 240_000);

afterAll(async () => {
  await device?.cleanup(APPS).catch(() => {});
  await handle?.stop();
  await dockerd?.stop();
}, 120_000);

describe("publishing a repo as a new user writes it", () => {
  test("publishes with no extra flags: three apps, the local base image pushed from the engine, the subdirectory built", () => {
    expect(published.code, published.stderr).toBe(0);
    const r = published.json;
    expect(r.apps.map((a: { name: string }) => a.name)).toEqual(APPS);
    expect(r.hardwareIds).toEqual(["x86_64-linux"]);
    expect(r.platforms).toEqual({ "x86_64-linux": "linux/amd64" });
    const bySource = Object.fromEntries(r.images.map((i: { name: string; source: string }) => [i.name, i.source]));
    expect(bySource).toEqual({ "local/busybox": "local", "orders/api": "build" });
    // Once, though three services use it.
    expect(published.stderr.match(/image local\/busybox:1: from the local engine/g)).toHaveLength(1);
  });

  test("the bundles hold the interpolated, pinned compose files: defaults, environment and .env resolved, $$ kept for the device", async () => {
    const client = gatewayRegistry(handle);
    const apps = Object.fromEntries(await Promise.all(published.json.apps.map(async (a: { name: string; uri: string }) => [a.name, await fetchApp(client, a.uri)] as const)));
    const pinnedBase = published.json.images.find((i: { name: string }) => i.name === "local/busybox").pinned;
    expect(pinnedBase).toMatch(new RegExp(`^${handle.host.replace(/\./g, "\\.")}/main/local/busybox@sha256:[0-9a-f]{64}$`));

    const web = apps["static-site"]!;
    expect(web.entries.sort()).toEqual(["docker-compose.yml", "www/", "www/index.html"]);
    expect(web.compose.services.site.image).toBe(pinnedBase);
    expect(web.compose.services.site.ports).toEqual([`127.0.0.1:${webPort}:80`]);
    expect(web.files["docker-compose.yml"]).toContain("# A static site"); // comments survive

    const worker = apps.orders!;
    expect(worker.compose.services.sidecar.image).toBe(pinnedBase);
    expect(worker.compose.services.sidecar.command).toEqual(["sh", "-c", 'echo "sidecar says the fleet"; exec sleep 3600']);
    expect(worker.compose.services.api.image).toMatch(/\/main\/orders\/api@sha256:[0-9a-f]{64}$/);
    expect(worker.compose.services.api.build).toBeUndefined();
    expect(worker.compose.services.api.ports).toEqual([`127.0.0.1:${apiPort}:80`]);

    const oneshot = apps["db-migrate"]!;
    expect(oneshot.compose.services.init.command).toEqual(["sh", "-c", 'echo "one-shot ran in $$(hostname) for the fleet"']);
    for (const a of Object.values(apps)) expect(a.files["docker-compose.yml"]).not.toMatch(/\$\{(?!\$)/);
  });

  test("the target records each layer's unpacked size for the images publish unpacked", async () => {
    const { targets } = await signedTargets(handle);
    const t = targets[`x86_64-linux-${published.json.version}`]!;
    for (const name of APPS) {
      const sizes = (t.custom.docker_compose_apps[name] as { uncompressedLayerSizes?: Record<string, number> }).uncompressedLayerSizes;
      expect(sizes, name).toBeDefined();
      for (const [digest, n] of Object.entries(sizes!)) {
        expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/);
        expect(n).toBeGreaterThan(0);
      }
    }
  });

  test("a device updates: the web app serves its bind-mounted files, the built api answers, the one-shot ran and the sidecar runs", async () => {
    const r = await device.fioup("update");
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.state).toBe("completed");
    expect(await httpGet(webPort)).toBe("hello from web v1\n");
    expect(await httpGet(apiPort)).toBe("hello from the api\n");
    const site = await containerOf("static-site", "site");
    expect((await dockerd.docker("inspect", "--format", "{{.State.Health.Status}}", site)).trim()).toBe("healthy");
    const init = await containerOf("db-migrate", "init");
    expect((await dockerd.docker("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", init)).trim()).toBe("exited 0");
    // $$(hostname) reached the shell as $(hostname): the container's own id-based hostname.
    expect((await dockerd.docker("logs", init)).trim()).toMatch(/^one-shot ran in [0-9a-f]{12} for the fleet$/);
    const side = await containerOf("orders", "sidecar");
    expect((await dockerd.docker("logs", side)).trim()).toBe("sidecar says the fleet");
    const st = await device.fioup("status");
    expect(st.code).toBe(0);
  });

  test("an unset variable without a default stops publish naming the file, line and variable", async () => {
    const r = await publishCli({ GREETING: "x" }, await editedCopy("static-site/compose.yaml", "${WEB_PORT:-8080}", "${WEB_PORT}"));
    expect(r.code).toBe(10);
    expect(r.stderr).toContain('Cannot interpolate static-site/compose.yaml:7: variable "WEB_PORT" is not set and has no default');
  });

  test("a build context outside the repository is refused before anything is built", async () => {
    const r = await publishCli({ WEB_PORT: "1" }, await editedCopy("orders/docker-compose.yml", "context: ./api", "context: ../../elsewhere"));
    expect(r.code).toBe(12);
    expect(r.stderr).toContain('its build context "../../elsewhere" is outside the repository');
    expect(r.stderr).not.toContain("docker build");
  });
});
