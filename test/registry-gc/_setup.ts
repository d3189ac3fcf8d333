/**
 * What the gc tests that publish share: a real gateway, a docker engine and an upstream registry,
 * and a containers checkout of two apps, a built image (simple-app) and a third-party
 * multi-platform nginx index (httpd), with the options that publish it to the gateway.
 *
 * @module
 */
import { readFileSync, readdirSync, utimesSync } from "node:fs";
import { join, resolve } from "node:path";
import { expect } from "bun:test";
import type { PublishOptions, PublishResult } from "../../gateway/publish/publish.ts";
import { resolveApps, type ResolvedApps } from "../../lib/device/resolve.ts";
import { DeviceBlobStore } from "../../lib/device/store.ts";
import { startDockerd, type DockerdHandle } from "../harness/dockerd.ts";
import { startDockerRegistry, type DockerRegistryHandle } from "../harness/docker-registry.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { tempDir } from "../harness/tmp.ts";
import { gatewayRegistry } from "../publish/_inspect.ts";
import { FIXTURES, containersRepo, loadBaseImage, pushUpstreamNginx } from "../publish/_setup.ts";

const REPO = resolve(import.meta.dir, "../..");

export interface PublishSetup {
  dockerd: DockerdHandle;
  upstream: DockerRegistryHandle;
  gw: GatewayHandle;
  /** The containers checkout (git, branch master). */
  repo: string;
  /** Reads a file of the fixture checkout (test/fixtures/containers). */
  fixture(path: string): string;
  /** publish's options for the checkout, to the gateway. */
  opts(): PublishOptions;
  stop(): Promise<void>;
}

export async function startPublishSetup(): Promise<PublishSetup> {
  const [dockerd, upstream, gw] = await Promise.all([startDockerd(), startDockerRegistry(), startGateway()]);
  await loadBaseImage(dockerd);
  await pushUpstreamNginx(upstream);
  const fixture = (p: string) => readFileSync(join(FIXTURES, p), "utf8");
  const repo = await containersRepo(
    Object.fromEntries(
      ["simple-app/docker-compose.yml", "simple-app/Dockerfile", "simple-app/app.sh", "simple-app/.composeappignores", "httpd/docker-compose.yml", "httpd/nginx.conf"].map((p) => [p, fixture(p)]),
    ),
  );
  return {
    dockerd,
    upstream,
    gw,
    repo,
    fixture,
    opts: () => ({
      containersDir: repo,
      ref: "refs/heads/master",
      server: gw.url,
      token: gw.adminToken,
      factoryConfig: join(REPO, "test/publish/factory-config.yml"),
      mirrors: { "docker.io": upstream.host },
      insecureRegistries: [upstream.host],
      env: { ...process.env, ...dockerd.env },
    }),
    stop: async () => {
      await Promise.all([gw.stop(), upstream.stop(), dockerd.stop()]);
    },
  };
}

/**
 * What a device resolves for a published version's apps on each platform of the nginx index
 * (arm64's manifest is reached only through the index), every blob fetched into its own store:
 * what gc must leave of a version a target names. An arm64 device resolves only the apps of
 * third-party images: the images publish builds here are amd64 alone, which resolving refuses for
 * arm64 (lib/device/resolve.ts), as such a device would fail to start them.
 */
export async function deviceFetches(gw: GatewayHandle, r: PublishResult): Promise<ResolvedApps[]> {
  const client = gatewayRegistry(gw);
  const plans: ResolvedApps[] = [];
  const built = new Set(r.images.filter((i) => i.source === "build").map((i) => i.pinned));
  for (const architecture of ["amd64", "arm64"]) {
    const apps = r.apps.filter((a) => architecture === "amd64" || !a.services.some((s) => built.has(s.pinned))).map((a) => ({ name: a.name, uri: a.uri }));
    const store = new DeviceBlobStore(await tempDir(`gc-device-${architecture}-`));
    // A device knows the gateway's registry by --server's host alone (fioup/update/context.ts).
    const registry = (host: string) => {
      if (host !== gw.host) throw new Error(`the target names registry ${host}, not the gateway's ${gw.host}: a device would pull it without its certificate`);
      return client;
    };
    const plan = await resolveApps(apps, { registry, store, platform: { os: "linux", architecture } });
    for (const b of plan.blobs) await store.pull(client, b.repo, b);
    for (const b of plan.blobs) expect(store.has(b.digest)).toBe(true);
    plans.push(plan);
  }
  return plans;
}

/** Makes everything in the gateway's registry `ms` old, as if pushed then: older than gc's grace period. */
export function ageRegistry(gw: GatewayHandle, ms: number): void {
  const registry = join(gw.dataDir, "registry");
  const old = new Date(Date.now() - ms);
  for (const f of readdirSync(registry, { recursive: true })) utimesSync(join(registry, String(f)), old, old);
}
