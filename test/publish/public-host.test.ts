/**
 * Replicas behind a load balancer: each is served with the balancer's address as --public-url,
 * and devices reach only that. `gateway publish --server <one replica's own address>` (any replica
 * answers admin commands) pins the services under the gateway's public host, as its whoami says it,
 * not under the replica's address; and a --registry naming the balancer is the gateway's registry
 * (its token and CA), not a stranger with the system CA. A TLS-passing proxy stands for the balancer.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { publish, type PublishOptions, type PublishResult } from "../../gateway/publish/publish.ts";
import { parseReference } from "../../lib/oci/reference.ts";
import { RegistryClient } from "../../lib/oci/registry-client.ts";
import { resolveApps } from "../../lib/device/resolve.ts";
import { DeviceBlobStore } from "../../lib/device/store.ts";
import { startFaultProxy, type FaultProxy } from "../harness/fault-proxy.ts";
import { tempDir } from "../harness/tmp.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { httpdCompose, httpdImage, pushImage, startDockerRegistry, type DockerRegistryHandle } from "../fioup/_setup.ts";
import { containersRepo } from "./_setup.ts";
import { signedTargets } from "./_inspect.ts";

let proxy: FaultProxy;
let upstream: DockerRegistryHandle;
let gw: GatewayHandle;
let publicHost: string;
let repo: string;

beforeAll(async () => {
  proxy = await startFaultProxy(0, 1);
  publicHost = `127.0.0.1:${proxy.port}`;
  [upstream, gw] = await Promise.all([startDockerRegistry(), startGateway({ args: ["--public-url", `https://${publicHost}`] })]);
  proxy.target = gw.port;
  const image = await pushImage(upstream, "test/public-host", "v1", httpdImage("public host v1"));
  repo = await containersRepo({ [`pubhost${process.pid}/docker-compose.yml`]: httpdCompose(image, 18099) });
}, 120_000);

afterAll(async () => {
  await proxy?.close();
  await Promise.all([gw?.stop(), upstream?.stop()]);
});

/** publish of the checkout to the replica's own address, --server. */
const opts = (o: Partial<PublishOptions>): PublishOptions => ({
  containersDir: repo,
  ref: "refs/heads/master",
  server: gw.url,
  token: gw.adminToken,
  hwids: ["amd64-linux"],
  platform: "linux/amd64",
  insecureRegistries: [upstream.host],
  env: { PATH: process.env.PATH, DOCKER_HOST: "unix:///nonexistent.sock" }, // no local engine: images come from upstream
  ...o,
});

/**
 * What a device fetches for the published apps: from the registry host the target names, which
 * must be the one it knows the gateway by (its public host; fioup/update/context.ts), through
 * the balancer with its certificate-less admin stand-in (the token) and the gateway's CA.
 */
async function deviceFetches(r: PublishResult): Promise<void> {
  const client = new RegistryClient({ registry: publicHost, auth: { token: gw.adminToken }, tls: { ca: gw.caPem } });
  const registry = (host: string) => {
    if (host !== publicHost) throw new Error(`the target names registry ${host}, not the gateway's public ${publicHost}: a device cannot reach it`);
    return client;
  };
  const store = new DeviceBlobStore(await tempDir("public-host-device-"));
  const plan = await resolveApps(r.apps.map((a) => ({ name: a.name, uri: a.uri })), { registry, store, platform: { os: "linux", architecture: "amd64" } });
  for (const b of plan.blobs) await store.pull(client, b.repo, b);
  for (const b of plan.blobs) expect(store.has(b.digest)).toBe(true);
}

/** The registry hosts the signed target of `version` names for its apps and their services. */
async function pinnedHosts(r: PublishResult): Promise<string[]> {
  const { targets } = await signedTargets(gw);
  const t = Object.values(targets).find((e) => e.custom.version === String(r.version))!;
  const uris = Object.values(t.custom.docker_compose_apps ?? {}).map((a) => a.uri);
  return [...new Set([...uris, ...r.apps.flatMap((a) => a.services.map((s) => s.pinned))].map((u) => parseReference(u).registry))];
}

describe("gateway publish to one replica behind a balancer", () => {
  test("--server <the replica's own address>: the apps and their images are pinned under the gateway's public host, and a device fetches them there", async () => {
    const lines: string[] = [];
    const r = await publish(opts({ log: (l) => lines.push(l) }));
    expect(r.registry).toBe(publicHost);
    expect(await pinnedHosts(r)).toEqual([publicHost]);
    expect(lines.join("\n")).toContain(`the targets name the gateway's registry by its public URL, ${publicHost}`);
    await deviceFetches(r);
  });

  test("--registry <the balancer's host:port> is the gateway's registry: pushed through it with the gateway's token and CA, pinned under it", async () => {
    const r = await publish(opts({ registry: publicHost }));
    expect(r.registry).toBe(publicHost);
    expect(await pinnedHosts(r)).toEqual([publicHost]);
    await deviceFetches(r);
  });

  test("an image a compose file names by the replica's own address (--server) is the gateway's already: pinned in place under the public host, not copied under <factory>/<factory>/", async () => {
    const first = await publish(opts({}));
    const pinned = parseReference(first.apps[0]!.services[0]!.pinned);
    const byServer = `${gw.host}/${pinned.repository}@${pinned.digest}`;
    const again = await containersRepo({ [`byserver${process.pid}/docker-compose.yml`]: httpdCompose(byServer, 18098) });
    const r = await publish(opts({ containersDir: again }));
    expect(r.apps[0]!.services[0]!.pinned).toBe(`${publicHost}/${pinned.repository}@${pinned.digest}`);
    await deviceFetches(r);
  });
});
