/**
 * `preload --server <a replica's own address>` for a gateway whose public URL (--public-url: a
 * load balancer's) is another address: the targets name the gateway's registry by the public host,
 * and preload must read it through --server (the host mapped, with the gateway's token and CA), as
 * publish and export do, rather than go to the public host as to a stranger. The factory's build
 * host may not reach the devices' address at all: here the public address answers nothing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { startFaultProxy, type FaultProxy } from "../harness/fault-proxy.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { tempDir } from "../harness/tmp.ts";
import { Publisher, httpdCompose, httpdImage, pushImage, startDockerRegistry, type DockerRegistryHandle } from "../fioup/_setup.ts";
import { asTestGateway, factoryConfig, preload, preloadConfig } from "./_setup.ts";

const A = "plpub";
let upstream: DockerRegistryHandle;
let proxy: FaultProxy;
let gw: GatewayHandle;
let publicHost: string;

beforeAll(async () => {
  proxy = await startFaultProxy(0, 0);
  publicHost = `127.0.0.1:${proxy.port}`;
  [upstream, gw] = await Promise.all([startDockerRegistry(), startGateway({ args: ["--polling-seconds", "1", "--public-url", `https://${publicHost}`] })]);
  proxy.target = gw.port;
  const a = await pushImage(upstream, `test/${A}`, "v1", httpdImage(`${A} v1`));
  // Published through the balancer's address: the targets name it as the apps' registry.
  const pub = await Publisher.create({ ...asTestGateway(gw), url: `https://${publicHost}`, host: publicHost }, upstream, { [`${A}/docker-compose.yml`]: httpdCompose(a, 18096) });
  await pub.publish(1);
  // From here the public address answers nothing: the factory reaches the gateway only by --server.
  await proxy.close();
}, 120_000);

afterAll(async () => {
  await Promise.all([gw?.stop(), upstream?.stop(), proxy?.close().catch(() => undefined)]);
});

describe("preload --server a replica's own address, the targets naming the public host", () => {
  test("reads the gateway's registry through --server", async () => {
    const out = join(await tempDir("preload-public-"), "root");
    const fc = await factoryConfig(preloadConfig());
    const r = await preload(["--factory-config", fc, "--ref", "refs/heads/master", "--server", gw.url, "--token", gw.adminToken, "--hwid", "amd64-linux", "--out", out, "--format", "dir", "--json"]);
    expect({ code: r.code, err: r.code ? r.stderr : "" }).toEqual({ code: 0, err: "" });
    expect(r.json.apps).toEqual([A]);
    expect(r.json.blobs).toBeGreaterThan(1);
    expect(readdirSync(join(out, "var/sota/reset-apps/blobs/sha256"))).toHaveLength(r.json.blobs);
  }, 120_000);
});
