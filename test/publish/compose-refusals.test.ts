/**
 * What publish changes in, or refuses of, an app's compose file so that it runs on a device
 * that never pulls: a service's `pull_policy` (`always`, `daily`...) is dropped from the pinned
 * file, as compose would otherwise try to pull the local tag the device runs the app with, and
 * fail every start; a top-level `include:` is refused (exit 10) with nothing built or pushed,
 * as the services it brings would never be pinned. Through the CLI, as CI runs it, with a
 * publish token, a real gateway and a real dockerd building the image.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { RegistryError } from "../../lib/oci/registry-client.ts";
import { startDockerd, type DockerdHandle } from "../harness/dockerd.ts";
import { startGateway, type GatewayHandle } from "./_gateway.ts";
import { fetchApp, gatewayRegistry, signedTargets } from "./_inspect.ts";
import { containersRepo, loadBaseImage } from "./_setup.ts";

const GATEWAY_MAIN = join(import.meta.dir, "..", "..", "gateway", "main.ts");
let dockerd: DockerdHandle;
let gw: GatewayHandle;
let publishToken: string;

/** An image built here (a top-level Dockerfile). */
const API = {
  "api/Dockerfile": "FROM fixtures/busybox:latest\nCOPY ./hello.txt /hello.txt\n",
  "api/hello.txt": "hello\n",
};

beforeAll(async () => {
  [dockerd, gw] = await Promise.all([startDockerd(), startGateway()]);
  await loadBaseImage(dockerd);
  const made = await gw.adminFetch("/admin/tokens", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ role: "publish", name: "ci" }) });
  publishToken = ((await made.json()) as { token: string }).token;
}, 180_000);

afterAll(async () => {
  await Promise.all([gw?.stop(), dockerd?.stop()]);
}, 180_000);

async function publishCli(repo: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = Bun.spawn(
    [process.execPath, GATEWAY_MAIN, "publish", "--containers", repo, "--ref", "refs/heads/master", "--server", gw.url, "--token", publishToken, "--format", "json", ...args],
    { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...dockerd.env, GATEWAY_TOKEN: "" } },
  );
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}

/** The tags of `repo` in the gateway's registry ([] when it has no such repository). */
async function pushedTags(repo: string): Promise<string[]> {
  return gatewayRegistry(gw)
    .listTags(repo)
    .catch((e: unknown) => {
      if (e instanceof RegistryError && e.status === 404) return [];
      throw e;
    });
}

describe("gateway publish of a service with pull_policy", () => {
  test("the published app's pinned compose file has no pull_policy (written in the service or taken through <<), its other keys kept", async () => {
    const repo = await containersRepo({
      ...API,
      "web/docker-compose.yml": [
        "x-defaults: &defaults",
        "  pull_policy: daily",
        "  restart: unless-stopped",
        "services:",
        "  api:",
        "    image: api",
        "    pull_policy: always",
        "    environment:",
        "      GREETING: hello",
        "  worker:",
        "    <<: *defaults",
        "    image: api",
        "",
      ].join("\n"),
    });
    const r = await publishCli(repo);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: expect.stringContaining("app web: pushed") });
    const out = JSON.parse(r.stdout);
    const app = await fetchApp(gatewayRegistry(gw), out.apps.find((a: { name: string }) => a.name === "web").uri);
    const { api, worker } = app.compose.services;
    expect(api).toEqual({ image: expect.stringMatching(/\/main\/api@sha256:[0-9a-f]{64}$/), environment: { GREETING: "hello" } });
    expect(worker).toEqual({ image: api.image, restart: "unless-stopped" });
    expect(app.files["docker-compose.yml"]).not.toContain("pull_policy: always");
    expect(r.stderr).toContain(`docker-compose.yml, service "api": dropped pull_policy: always from the pinned file`);
  }, 180_000);
});

describe("gateway publish of a compose file with a top-level include", () => {
  test("is refused with exit 10, naming the app's file and saying to write the services in; nothing is built, pushed or targeted", async () => {
    const repo = await containersRepo({
      "tool/Dockerfile": "FROM fixtures/busybox:latest\n",
      "site/docker-compose.yml": "include:\n  - db.yml\nservices:\n  tool:\n    image: tool\n",
      "site/db.yml": "services:\n  db:\n    image: postgres:16\n",
    });
    const before = await signedTargets(gw);
    for (const args of [["--dry-run"], []]) {
      const r = await publishCli(repo, ...args);
      expect({ args, code: r.code, out: JSON.parse(r.stdout) }).toEqual({
        args,
        code: 10,
        out: {
          code: "ComposeFileError",
          exitCode: 10,
          error: expect.stringContaining("Invalid compose file site/docker-compose.yml: include is not supported"),
        },
      });
      expect(r.stdout).toContain("write those services into this file instead");
      expect(r.stderr).not.toContain("docker build");
    }
    expect({ tool: await pushedTags("main/tool"), site: await pushedTags("main/site") }).toEqual({ tool: [], site: [] });
    expect((await signedTargets(gw)).version).toBe(before.version);
  }, 180_000);
});
