/**
 * Two `gateway publish` runs at once against a real gateway must not overwrite each other's
 * target. Both read targets.json at the same version and so pick the same target name; the
 * gateway accepts the first POST and answers 409 to the second (its `expectedVersion` is
 * stale), which reads again, renumbers and lands as the next version.
 *
 * The race is made certain, not left to timing: the test process holds each publish's
 * `POST /admin/targets` until both have been sent (both reads are then done). The gateway,
 * its registry and TUF repository are the real ones.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { publish, type PublishOptions } from "../../gateway/publish/publish.ts";
import { startDockerRegistry, type DockerRegistryHandle } from "../harness/docker-registry.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { containersRepo, pushUpstreamNginx } from "../publish/_setup.ts";

let upstream: DockerRegistryHandle;
let gw: GatewayHandle;
const realFetch = globalThis.fetch;

beforeAll(async () => {
  [upstream, gw] = await Promise.all([startDockerRegistry(), startGateway()]);
  await pushUpstreamNginx(upstream);
}, 180_000);

afterAll(async () => {
  globalThis.fetch = realFetch;
  await Promise.all([gw?.stop(), upstream?.stop()]);
}, 180_000);

/** Holds the first `n` POST /admin/targets until all `n` were sent (or 60 s passed). */
function holdTargetPosts(n: number): { held: () => number } {
  const waiting: (() => void)[] = [];
  let seen = 0;
  const release = () => waiting.splice(0).forEach((go) => go());
  globalThis.fetch = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = input instanceof Request ? input.url : String(input);
    if (init?.method === "POST" && new URL(url).pathname === "/admin/targets" && seen < n) {
      seen++;
      await new Promise<void>((go) => {
        waiting.push(go);
        if (waiting.length === n) release();
        else setTimeout(release, 60_000);
      });
    }
    return realFetch(input, init);
  }) as typeof fetch;
  return { held: () => seen };
}

test("two publishes started together both end up in targets.json, as two versions", async () => {
  const repo = (conf: string) =>
    containersRepo({ "httpd/docker-compose.yml": "services:\n  web:\n    image: nginx:alpine\n    volumes: ['./nginx.conf:/etc/nginx/conf.d/default.conf']\n", "httpd/nginx.conf": conf });
  const [a, b] = await Promise.all([repo("server { listen 80; }\n"), repo("server { listen 8080; }\n")]);
  const logs: string[] = [];
  const opts = (containersDir: string, who: string): PublishOptions => ({
    containersDir,
    ref: "refs/heads/master",
    server: gw.url,
    token: gw.adminToken,
    hwids: ["x86_64-linux"],
    mirrors: { "docker.io": upstream.host },
    insecureRegistries: [upstream.host],
    log: (line) => logs.push(`${who}: ${line}`),
  });
  const gate = holdTargetPosts(2);
  let results;
  try {
    results = await Promise.all([publish(opts(a, "a")), publish(opts(b, "b"))]);
  } finally {
    globalThis.fetch = realFetch;
  }
  expect(gate.held()).toBe(2);
  // One of them was told the version had moved and renumbered.
  expect(logs.filter((l) => /another publish signed targets\.json meanwhile/.test(l))).toHaveLength(1);
  expect(results.map((r) => r.version).sort()).toEqual([1, 2]);

  const res = await gw.adminFetch("/admin/targets");
  const { targets, version } = (await res.json()) as { targets: Record<string, { custom: { docker_compose_apps: Record<string, { uri: string }> } }>; version: number };
  expect(Object.keys(targets).sort()).toEqual(["x86_64-linux-1", "x86_64-linux-2"]);
  expect(version).toBe(3); // the empty targets.json, then one version per publish
  // Each target carries its own publish's app, not the other's.
  for (const r of results) expect(targets[`x86_64-linux-${r.version}`]!.custom.docker_compose_apps.httpd!.uri).toBe(r.apps[0]!.uri);
  expect(new Set(results.map((r) => r.apps[0]!.uri)).size).toBe(2);
});
