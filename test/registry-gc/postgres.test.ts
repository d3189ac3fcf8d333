/**
 * `gateway registry gc --untargeted` on a gateway served with PostgreSQL: the targets are read
 * from the --db given (while serve runs), so what the target names stays until the target is
 * removed; without --db the data dir's kind is known and the run is refused, removing nothing.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseReference } from "../../lib/oci/reference.ts";
import { publish, type PublishResult } from "../../gateway/publish/publish.ts";
import { startDockerRegistry, type DockerRegistryHandle } from "../harness/docker-registry.ts";
import { startGateway, type GatewayHandle } from "../harness/gateway.ts";
import { startPostgres, type PostgresHandle } from "../harness/postgres.ts";
import { run } from "../harness/tmp.ts";
import { gatewayRegistry } from "../publish/_inspect.ts";
import { FIXTURES, containersRepo, pushUpstreamNginx } from "../publish/_setup.ts";

const REPO = resolve(import.meta.dir, "../..");
let pg: PostgresHandle;
let upstream: DockerRegistryHandle;
let gw: GatewayHandle;
let db: string;
let v1: PublishResult;

const gateway = (...args: string[]) => run([process.execPath, join(REPO, "gateway/main.ts"), ...args], { allowFail: true });
const files = () => readdirSync(join(gw.dataDir, "registry"), { recursive: true }).map(String).sort();

beforeAll(async () => {
  [pg, upstream] = await Promise.all([startPostgres(), startDockerRegistry()]);
  db = await pg.createDatabase("gc_untargeted");
  gw = await startGateway({ db });
  await pushUpstreamNginx(upstream);
  const fixture = (p: string) => readFileSync(join(FIXTURES, p), "utf8");
  const repo = await containersRepo({ "httpd/docker-compose.yml": fixture("httpd/docker-compose.yml"), "httpd/nginx.conf": fixture("httpd/nginx.conf") });
  v1 = await publish({
    containersDir: repo,
    ref: "refs/heads/master",
    server: gw.url,
    token: gw.adminToken,
    mirrors: { "docker.io": upstream.host },
    insecureRegistries: [upstream.host],
  });
}, 180_000);

afterAll(async () => {
  await Promise.all([gw?.stop(), upstream?.stop()]);
  await pg?.stop();
}, 180_000);

describe("gateway registry gc --untargeted on PostgreSQL", () => {
  test("without --db, or with one that does not answer, it is refused and removes nothing", async () => {
    const before = files();
    const r = await gateway("registry", "gc", "--data", gw.dataDir, "--untargeted", "--grace", "0s");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`Cannot read the current targets from ${gw.dataDir}: it is served with a PostgreSQL database. Nothing was removed; give the same --db postgres://... gateway serve has`);
    const down = await gateway("registry", "gc", "--data", gw.dataDir, "--untargeted", "--grace", "0s", "--db", "postgres://postgres@127.0.0.1:1/gateway");
    expect(down.code).toBe(1);
    expect(down.stderr).toStartWith("gateway registry gc: Cannot read the current targets from postgres://postgres@127.0.0.1:1/gateway: ");
    expect(down.stderr).toContain("Nothing was removed");
    expect(files()).toEqual(before);
  });

  test("with --db, the target's app stays until the target is removed", async () => {
    const client = gatewayRegistry(gw);
    const appRef = parseReference(v1.apps[0]!.uri);
    const kept = await gateway("registry", "gc", "--data", gw.dataDir, "--untargeted", "--grace", "0s", "--db", db);
    expect(kept.stderr).toBe("");
    expect(kept.stdout).toStartWith("removed 0 manifests no target reaches");
    expect(await client.headManifest(appRef.repository, appRef.digest!)).toBeDefined();

    for (const name of Object.keys(v1.targets)) expect((await gw.adminFetch(`/admin/targets/${name}`, { method: "DELETE" })).status).toBe(200);
    const r = await gateway("registry", "gc", "--data", gw.dataDir, "--untargeted", "--grace", "0s", "--db", db);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    // The app manifest, the nginx index and its two platform manifests.
    expect(r.stdout).toStartWith("removed 4 manifests no target reaches and ");
    expect(await client.headManifest(appRef.repository, appRef.digest!)).toBeUndefined();
  });
});
