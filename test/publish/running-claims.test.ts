/**
 * What a device says it runs moves publish's numbering only so far: a device reports its running
 * target in its own check-in header, so one device claiming a version far above the gateway's
 * targets neither makes every publish fail (16 digits) nor leaps the fleet's numbering there;
 * publish says what it did not number above. A near claim (a target published on a gateway since
 * lost) is still numbered above. Through the CLI, as CI runs it, with a device registered as fioup
 * registers (its own key and certificate).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { startDockerRegistry, type DockerRegistryHandle } from "../harness/docker-registry.ts";
import { register } from "../ui/_fleet.ts";
import type { TlsDevice } from "../gateway/_register.ts";
import { startGateway, type GatewayHandle } from "./_gateway.ts";
import { commit, containersRepo, pushUpstreamNginx } from "./_setup.ts";

const GATEWAY_MAIN = join(import.meta.dir, "..", "..", "gateway", "main.ts");
let upstream: DockerRegistryHandle;
let gw: GatewayHandle;
let devices: TlsDevice[];
let repo: string;

beforeAll(async () => {
  [upstream, gw] = await Promise.all([startDockerRegistry(), startGateway()]);
  await pushUpstreamNginx(upstream);
  const res = await gw.adminFetch("/admin/tokens", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name: "claims", maxUses: 2 }) });
  const { token } = (await res.json()) as { token: string };
  devices = [await register(gw, token, "claims-far"), await register(gw, token, "claims-near")];
  repo = await containersRepo({ "web/docker-compose.yml": "services:\n  web:\n    image: nginx:alpine\n" });
}, 180_000);

afterAll(async () => {
  await Promise.all([gw?.stop(), upstream?.stop()]);
}, 180_000);

async function publishCli(): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = Bun.spawn(
    [process.execPath, GATEWAY_MAIN, "publish", "--containers", repo, "--ref", "refs/heads/master", "--server", gw.url, "--token", gw.adminToken, "--hwid", "amd64-linux", "--mirror", `docker.io=${upstream.host}`, "--insecure-registry", upstream.host, "--format", "json"],
    { stdout: "pipe", stderr: "pipe", env: { ...process.env, GATEWAY_TOKEN: "" } },
  );
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}

/** A check-in that says the device runs `target`, as fioup's header does. */
async function claims(d: TlsDevice, target: string): Promise<void> {
  const r = await d.fetch(`${gw.url}/repo/timestamp.json`, { headers: { "x-ats-target": target } });
  expect(r.status).toBe(200);
  // Sightings are written in a batch once a second: wait until the gateway lists it.
  for (let i = 0; i < 50; i++) {
    const list = (await (await gw.adminFetch("/admin/targets")).json()) as { running?: string[] };
    if (list.running?.includes(target)) return;
    await Bun.sleep(100);
  }
  throw new Error(`the gateway never listed ${target} as running`);
}

describe("gateway publish and the targets devices say they run", () => {
  test("a claim of 999999999999999 neither fails the publish nor moves its number, and publish says so; a near one is numbered above", async () => {
    await claims(devices[0]!, "amd64-linux-999999999999999");
    const first = await publishCli();
    expect(first.code, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout).version).toBe(1);
    expect(first.stderr).toContain("note: devices report running amd64-linux-999999999999999, more than 1000 versions above the targets this gateway holds: not numbered above");

    await claims(devices[1]!, "amd64-linux-5"); // published on a gateway since lost, say
    await commit(repo, { "web/docker-compose.yml": "services:\n  web:\n    image: nginx:alpine\n    environment:\n      V: '2'\n" });
    const second = await publishCli();
    expect(second.code, second.stderr).toBe(0);
    expect(JSON.parse(second.stdout).version).toBe(6);
  }, 120_000);
});
